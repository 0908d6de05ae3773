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
import secrets
import time

from django.db import DatabaseError
from django.utils import timezone

from bpf.classes import COUNTER_NAMES
from bpf.loader import PreflightError, TrafficCounter
from metrics.links import Link, current_links, total_members
from metrics.models import Host, SamplerRun
from metrics.sampler import Sampler
from metrics.selection import Selection
from metrics.spool import Spool

log = logging.getLogger("netmetrics.sampler")

# What the kernel counts in the kept maps, and so never goes down while a run is continued.
KERNEL_COUNTED = (*COUNTER_NAMES, "tcp_retransmits")


class InterfaceWatcher:
    """Keeps `counter` and `sampler` on exactly the selected interfaces that are up."""

    def __init__(
        self, host: Host, counter: TrafficCounter, sampler: Sampler, selection: Selection
    ) -> None:
        self.host = host
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
        """Attach to `name` and start its run, or continue the run its kept counters belong
        to; PreflightError (one line) when it cannot be."""
        counted = self.counter.add(name)
        try:
            run, started = open_run(
                self.host,
                name,
                counted.mode,
                self.counter,
                self.sampler.interval,
                self.sampler.spool,
                self.sampler.spooling,
            )
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


def open_run(
    host: Host,
    name: str,
    mode: str,
    counter: TrafficCounter,
    interval: float,
    spool: Spool | None = None,
    offline: bool = False,
) -> tuple[SamplerRun, float]:
    """The run of interface `name` once its programs are attached (or of the host total:
    `mode` "host"), and the monotonic time its counts were last written: the run its kept
    counters belong to, continued, else a new one from zero.

    With a spool, a database that does not answer (or `offline`: the spool still holds ticks,
    so the database's runs are behind) gives a new run that is not saved: the spool creates it
    with its first tick. Kept counters are then counted afresh, since their run cannot be
    read; what they held since their last sample was spooled by the sampler that wrote them.
    """
    iface = None if mode == "host" else name
    token = counter.token(iface)
    try:
        if not offline:
            if host._state.adding:  # the database did not answer when the sampler started
                host.save()
            run = kept_run(host, name, token, counter, interval, mode)
            if run is not None:
                if iface is not None:
                    counter.resume(iface, run.counters())
                return run, since_written(run)
        run = new_run(host, name, mode, counter, interval)
        if not offline:
            run.save()
    except DatabaseError:
        if spool is None:
            raise
        log.warning("%s: the database does not answer: a new run, created by the spool", name)
        run = new_run(host, name, mode, counter, interval)
    if token and iface is not None:
        counter.reset(iface)
    counter.set_token(iface, run.kernel_token or 0)
    return run, time.monotonic()


def new_run(
    host: Host, name: str, mode: str, counter: TrafficCounter, interval: float
) -> SamplerRun:
    """An interface's run, once its programs are attached and the mode they got is known; or
    the host total's (`mode` "host"), not saved yet. Its kernel_token is new: the caller sets
    it beside the counters (TrafficCounter.set_token)."""
    return SamplerRun(
        host=host,
        interface=name,
        mode=mode,
        egress=counter.egress,
        interval=interval,
        flow_table=counter.flow_table,
        pid=os.getpid(),
        started_at=timezone.now(),
        kernel_token=secrets.randbits(63) or 1,
    )


def kept_run(
    host: Host, name: str, token: int, counter: TrafficCounter, interval: float, mode: str
) -> SamplerRun | None:
    """The run that the kernel's kept counters of `name` (or of the host total, `mode` "host")
    belong to, continued by this process; None when there is none to continue: no token, no
    such run of this host, other options, or counters below what it wrote (then the counters
    are not the ones it read)."""
    if not token:
        return None
    run = (
        SamplerRun.objects.filter(kernel_token=token, interface=name, host=host)
        .select_related("last_sample")
        .first()
    )
    options = (mode, counter.egress, interval, counter.flow_table)
    if run is None or (run.mode, run.egress, run.interval, run.flow_table) != options:
        log.info("%s: the kept counters belong to no run with these options: counting afresh", name)
        return None
    if mode != "host":
        now = counter.read()[name]
        if any(now[field] < getattr(run, field) for field in KERNEL_COUNTED):
            log.warning("%s: the kept counters are below run %d's: counting afresh", name, run.pk)
            return None
    run.resume(os.getpid())
    log.info(
        "%s: continuing run %d, last written %.1f s ago; what was counted meanwhile is in its "
        "next sample",
        name,
        run.pk,
        (timezone.now() - run.last_written()).total_seconds(),
    )
    return run


def since_written(run: SamplerRun) -> float:
    """The monotonic time at which the run's counts were last written."""
    age = (timezone.now() - run.last_written()).total_seconds()
    return time.monotonic() - max(0.0, age)
