"""Turning the kernel's cumulative counters into Sample rows, one tick at a time, for every
watched interface and the host total in one transaction."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from bpf.classes import ALL_COUNTER_NAMES
from bpf.flows import FlowCounts
from metrics.flows import FlowTracker, merged
from metrics.flows import save as save_flows
from metrics.models import Host, Recording, Sample, SamplerRun, Series
from metrics.rates import bandwidth_bps
from metrics.retention import prune
from metrics.spool import Spool, WrittenRuns, spooled

log = logging.getLogger("netmetrics.sampler")


class Kernel(Protocol):
    """What the sampler reads: bpf.loader.TrafficCounter, or a test's fake."""

    def read(self) -> Mapping[str, Mapping[str, int]]: ...

    def harvest_flows(self) -> Mapping[str, Mapping[bytes, FlowCounts]]: ...


class Rules(Protocol):
    """What evaluates rules on the samples just written: alerts.evaluator.AlertEvaluator."""

    def evaluate(self, samples: Sequence[Sample]) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Watched:
    """A run being recorded, and the monotonic times of the counters it holds and of the last
    read of its flows."""

    run: SamplerRun
    flows: FlowTracker | None
    last_written: float
    last_read: float


class Sampler:
    """Records one Sample per tick for each watched interface's run, from the kernel's
    cumulative counters, and with `total` one for the host total: the sum of the interfaces in
    `members` (see metrics/links.py for which), all in one transaction.

    The interval of a sample is the real time since the last sample that was written, so a late
    tick or a failed write widens the next sample instead of losing or inventing traffic. With
    `flow_top`, each tick also harvests the kernel's flow table and writes what it keeps in the
    same transaction; what a failed write did not store stays in memory.

    With a `spool` (a central database: DATABASE_URL), a tick the database does not take is
    kept in the spool instead, and so is every tick after it until catch_up() has written the
    spool out, oldest first: the database receives every tick, in order, and the samples and
    rollups are those that writing on time would have made. Flows wait in memory meanwhile.

    With `rules`, each tick written (not spooled) has the alert rules evaluated on its samples.
    """

    # Each interface is pruned at most every PRUNE_EVERY ticks, one interface a tick: with 50
    # of them, pruning all in one tick took longer than the tick. Each prune deletes at most
    # a batch per tier.
    PRUNE_EVERY = 10

    def __init__(
        self,
        kernel: Kernel,
        interval: float,
        flow_top: int | None = None,
        total: SamplerRun | None = None,
        started: float | None = None,
        spool: Spool | None = None,
        rules: Rules | None = None,
        prune_slot: int = 0,
    ) -> None:
        self.kernel = kernel
        self.prune_slot = prune_slot  # Host.prune_slot: the tick of every PRUNE_EVERY it prunes on
        self.rules = rules
        self.spool = spool
        self._written = WrittenRuns()
        self._retry_at = 0.0  # monotonic: catch_up's next try after a failed one
        self._retry_wait = 0.0
        self.interval = interval
        self.flow_top = flow_top
        self.watched: dict[str, Watched] = {}
        self.members: set[str] = set()
        self.total = None if total is None else self._watched(total, started)
        self.failed_writes = 0
        self.ticks = 0
        self._to_prune: deque[Series] = deque()

    def _watched(self, run: SamplerRun, started: float | None) -> Watched:
        started = time.monotonic() if started is None else started
        flows = None if self.flow_top is None else FlowTracker(run, self.flow_top, self.interval)
        return Watched(run, flows, started, started)

    def watch(self, run: SamplerRun, started: float | None = None) -> None:
        """Record run.interface from now on; `started` is when its counters started from 0."""
        self.watched[run.interface] = self._watched(run, started)

    @property
    def speaking(self) -> SamplerRun | None:
        """The run that stands for the sampler in its status line: the total, else the one."""
        if self.total is not None:
            return self.total.run
        return next(iter(self.watched.values())).run if self.watched else None

    def tick(self, closing: Collection[str] = (), final: bool = False) -> list[Sample] | None:
        """Record the interval since each run's last sample; None when the write failed.

        The `closing` interfaces' runs are stopped with their last interval and are watched no
        more; `final` (the sampler's last tick) writes every flow minute kept and stops the
        host total's run.
        """
        # Harvest before reading: the counters' flows_dropped then covers this harvest.
        harvest = self.kernel.harvest_flows() if self.flow_top is not None else {}
        counters = self.kernel.read()
        now = time.monotonic()
        timestamp = timezone.now()
        writes: list[tuple[Watched, Mapping[str, int], bool]] = [
            (watched, counters[name], final or name in closing)
            for name, watched in self.watched.items()
            if name in counters
        ]
        members = sorted(m for m in self.members if m in counters and m in self.watched)
        if self.total is not None:
            total = self._total(counters, members)
            writes.append((self.total, total, final))
            harvest = {
                **harvest,
                self.total.run.interface: merged(harvest.get(m, {}) for m in members),
            }
        for watched, counts, _ in writes:
            if watched.flows is not None:
                flows = harvest.get(watched.run.interface, {})
                elapsed = now - watched.last_read
                watched.flows.add(flows, counts["flows_dropped"], timestamp, elapsed)
            watched.last_read = now
        saved = [
            (
                watched.run,
                {field: getattr(watched.run, field) for field in SamplerRun.RECORDED_FIELDS},
            )
            for watched, _, _ in writes
        ]
        recordings = [
            Recording(
                watched.run,
                counts,
                now - watched.last_written,
                members if watched is self.total else None,
            )
            for watched, counts, _ in writes
        ]
        trackers = [(w.flows, last) for w, _, last in writes if w.flows is not None]
        # The spool first while it holds ticks, so that the database gets every tick in order;
        # and for a run the database has not seen (started while it did not answer): the
        # spool creates it.
        if self.spooling or any(w.run.pk is None for w, _, _ in writes):
            return self._spool(writes, recordings, timestamp, now, closing)
        try:
            with transaction.atomic():
                samples = SamplerRun.objects.record(recordings, timestamp)
                minutes = save_flows(trackers, timestamp) if trackers else []
                for name in closing:
                    if name in self.watched:
                        self.watched[name].run.stop(timestamp)
                if final and self.total is not None:
                    self.total.run.stop(timestamp)
        except DatabaseError as exc:
            for run, fields in saved:  # as they were: the next tick covers this one too
                for field, value in fields.items():
                    setattr(run, field, value)
            self.failed_writes += 1
            # A broken connection (file replaced, disk error) is reopened on the next try.
            connection.close_if_unusable_or_obsolete()
            if self.spool is not None:
                log.warning("the database does not answer (%s): spooling to %s", exc, self.spool)
                return self._spool(writes, recordings, timestamp, now, closing)
            log.warning("samples not written (%s); retrying next tick", exc)
            return None
        for tracker, written in minutes:
            tracker.forget(written)
        for watched, _, _ in writes:
            watched.last_written = now
        for name in closing:
            self.watched.pop(name, None)
        self.ticks += 1
        if self.rules is not None:
            self.rules.evaluate(samples)
        if not self._to_prune and self.prune_round_starts(self.ticks, self.prune_slot):
            self._to_prune.extend(run.series for run in self._runs())
        if self._to_prune:
            self.prune(self._to_prune.popleft())
        return samples

    @property
    def spooling(self) -> bool:
        """Whether ticks go to the spool: it holds ticks not yet written."""
        return self.spool is not None and len(self.spool) > 0

    def _spool(
        self,
        writes: list[tuple[Watched, Mapping[str, int], bool]],
        recordings: list[Recording],
        timestamp: datetime,
        now: float,
        closing: Collection[str],
    ) -> list[Sample]:
        """Keep the tick in the spool, as written as far as this process goes: the runs stay
        as the database has them, which the spooled counters are deltas against."""
        assert self.spool is not None
        self.spool.add(
            [
                spooled(rec, timestamp, last)
                for rec, (_, _, last) in zip(recordings, writes, strict=True)
            ]
        )
        for watched, _, _ in writes:
            watched.last_written = now
        for name in closing:
            self.watched.pop(name, None)
        return []

    def catch_up(self, until: float, batch: int = 60) -> None:
        """Write spooled ticks to the database, oldest first, `batch` ticks a transaction,
        until the spool is empty or the monotonic time `until`. The host shows as catching up
        (Host.backlog) meanwhile."""
        if not self.spooling or time.monotonic() < self._retry_at:
            return
        assert self.spool is not None
        while len(self.spool) and time.monotonic() < until:
            ticks = self.spool.oldest(batch)
            try:
                with transaction.atomic():
                    host = Host.objects.local()
                    for tick in ticks:
                        self._written.write(host, tick.entries)
                    Host.objects.filter(pk=host.pk).update(backlog=len(self.spool) - len(ticks))
            except DatabaseError as exc:
                self._written.forget()  # they may hold what was rolled back
                connection.close_if_unusable_or_obsolete()
                # A server that is gone may take a connect timeout to say so: wait longer
                # between tries the longer it stays away (1 s, doubling, at most 30 s).
                self._retry_wait = min(30.0, self._retry_wait * 2) if self._retry_wait else 1.0
                self._retry_at = time.monotonic() + self._retry_wait
                log.debug("spool: not written yet (%s)", exc)
                return
            self._retry_wait = 0.0
            self.spool.remove(ticks)
        if not len(self.spool):
            self._caught_up()

    def _caught_up(self) -> None:
        """The spool is written: go on from the runs as the database now has them."""
        assert self.spool is not None
        for watched in [*self.watched.values(), *([self.total] if self.total else [])]:
            run = self._written.stored(watched.run)
            if run is None:  # opened since its last tick: its next tick goes to the spool
                continue
            watched.run = run
            if watched.flows is not None:
                watched.flows.run = run
        self._written.forget()
        for interface, since, until in self.spool.folded():
            log.warning(
                "%s: per-second detail from %s to %s was folded into one sample (spool full)",
                interface,
                since,
                until,
            )
        self.spool.forget_folded()
        log.info("caught up: every spooled tick is written")

    def _total(
        self, counters: Mapping[str, Mapping[str, int]], members: list[str]
    ) -> dict[str, int]:
        """The host total's cumulative counters: its own as last written, plus what each member
        adds to its run's this tick (the same deltas its own sample gets)."""
        assert self.total is not None
        total = self.total.run
        runs = [(counters[name], self.watched[name].run) for name in members]
        return {
            field: getattr(total, field)
            + sum(counts[field] - getattr(run, field) for counts, run in runs)
            for field in ALL_COUNTER_NAMES
        }

    def _runs(self) -> list[SamplerRun]:
        runs = [w.run for w in self.watched.values()]
        return runs if self.total is None else [*runs, self.total.run]

    @classmethod
    def prune_round_starts(cls, ticks: int, slot: int) -> bool:
        """Whether a round of pruning (one series a tick) starts after the tick-th tick."""
        return (ticks + slot) % cls.PRUNE_EVERY == 0

    def prune(self, series: Series) -> None:
        try:
            prune(series, timezone.now())
        except DatabaseError as exc:  # retention can wait for the next round
            log.warning("%s: pruning old rows failed (%s)", series.interface, exc)

    def flush(
        self, closing: Collection[str] | None = None, attempts: int = 5, pause: float = 1.0
    ) -> bool:
        """Write the last partial interval, waiting out a briefly locked database: of the
        `closing` interfaces (and the others' so far), or at shutdown (None) of every run, with
        every flow minute kept. Whether it was written."""
        for _ in range(attempts):
            if closing is None:
                written = self.tick(closing=list(self.watched), final=True)
            else:
                written = self.tick(closing=closing)
            if written is not None:
                if closing is None and self.rules is not None:
                    self.rules.stop()
                return True
            time.sleep(pause)
        log.error("the counts since the last sample could not be written")
        return False


class StatusLog:
    """A short status line at most once per period: enough to see the sampler is alive. It
    speaks of the host total, or of the one interface without one."""

    def __init__(self, sampler: Sampler, period: float = 60.0) -> None:
        self.sampler = sampler
        self.period = period
        self._reset()

    def _reset(self) -> None:
        self.since = time.monotonic()
        self.samples = 0
        self.bytes = {"rx": 0, "tx": 0}
        self.seconds = 0.0

    def add(self, samples: list[Sample] | None) -> None:
        run = self.sampler.speaking
        for sample in samples or ():
            if run is not None and sample.run_id == run.pk:
                self.samples += 1
                self.seconds += sample.elapsed
                self.bytes["rx"] += sample.rx_total_bytes
                self.bytes["tx"] += sample.tx_total_bytes
        if time.monotonic() - self.since < self.period or run is None:
            return
        rates = ", ".join(
            f"{direction} {bandwidth_bps(count, self.seconds) / 1e6:.3f} Mbit/s"
            for direction, count in self.bytes.items()
            if direction == "rx" or run.egress
        )
        log.info(
            "%s: %d samples, %s, %d interfaces, %d failed writes so far",
            run.interface,
            self.samples,
            rates,
            len(self.sampler.watched),
            self.sampler.failed_writes,
        )
        self._reset()
