"""Which interfaces the sampler counts, as they come and go: the selection (metrics/selection.py)
applied to the host's links (metrics/links.py) whenever netlink says a link changed.

An interface is counted while it exists, is up and is selected. One that goes away, goes down,
is renamed or is replaced by another of the same name (a new ifindex) is closed: its last
interval is written, its run stopped, and what was attached to it removed. One that appears or
comes back gets a new run, counted from its first packet after the attach.
"""

from __future__ import annotations

import logging
import os
import time

from django.db import DatabaseError
from django.utils import timezone

from bpf.loader import PreflightError, TrafficCounter
from metrics.links import Link, current_links, total_members
from metrics.models import SamplerRun
from metrics.sampler import Sampler
from metrics.selection import Selection

log = logging.getLogger("netmetrics.sampler")


class InterfaceWatcher:
    """Keeps `counter` and `sampler` on exactly the selected interfaces that are up."""

    def __init__(self, counter: TrafficCounter, sampler: Sampler, selection: Selection) -> None:
        self.counter = counter
        self.sampler = sampler
        self.selection = selection
        # Interfaces whose attach failed, by ifindex: retried once the link changes again.
        self._refused: dict[str, int] = {}
        self._left_out: dict[str, str] = {}

    def sync(self, links: dict[str, Link] | None = None, strict: bool = False) -> None:
        """Close what is no longer selected, open what newly is, and recompute the host total's
        members. A refused attach is a warning, and is retried when the link changes; `strict`
        raises it instead (the first sync of interfaces the user named)."""
        links = current_links() if links is None else links
        choice = self.selection.choose(links)
        gone = [
            name
            for name, counted in self.counter.counted.items()
            if name not in choice.chosen or links[name].ifindex != counted.ifindex
        ]
        if gone:
            self.close(gone)
        for name in choice.chosen:
            if name in self.counter.counted or self._refused.get(name) == links[name].ifindex:
                continue
            self._refused.pop(name, None)
            try:
                self.open(name)
            except PreflightError as exc:
                if strict:
                    raise
                self._refused[name] = links[name].ifindex
                log.warning("not counting %s: %s", name, exc)
        self._update_members(links)

    def open(self, name: str) -> SamplerRun:
        """Attach to `name` and start its run; PreflightError (one line) when it cannot be."""
        mode = self.counter.add(name)
        started = time.monotonic()
        try:
            run = start_run(name, mode, self.counter, self.sampler.interval)
        except DatabaseError as exc:
            self.counter.remove(name)
            raise PreflightError(f"cannot write its run to the database ({exc})") from None
        self.sampler.watch(run, started)
        return run

    def close(self, names: list[str]) -> None:
        """Write the last interval of these interfaces' runs, stop them, detach."""
        self.sampler.flush(closing=names)
        for name in names:
            self.counter.remove(name)
            log.info("stopped counting %s", name)

    def _update_members(self, links: dict[str, Link]) -> None:
        members, left_out = total_members(list(self.counter.counted), links)
        self.sampler.members = set(members)
        if self.sampler.total is not None and left_out != self._left_out:
            for name, reason in left_out.items():
                log.info("host total: leaves out %s (%s)", name, reason)
        self._left_out = left_out


def start_run(name: str, mode: str, counter: TrafficCounter, interval: float) -> SamplerRun:
    """An interface's run, once its programs are attached and the mode they got is known; or
    the host total's (`mode` "host")."""
    return SamplerRun.objects.create(
        interface=name,
        mode=mode,
        egress=counter.egress,
        interval=interval,
        flow_table=counter.flow_table,
        pid=os.getpid(),
        started_at=timezone.now(),
    )
