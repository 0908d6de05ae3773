"""Turning the kernel's cumulative counters into Sample rows, one tick at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from metrics.flows import FlowTracker
from metrics.models import Sample, SamplerRun
from metrics.rates import bandwidth_bps
from metrics.retention import prune

log = logging.getLogger("netmetrics.sampler")

ReadCounters = Callable[[], Mapping[str, int]]


class Sampler:
    """Records one Sample per tick for a run, from a function returning cumulative counters.

    The interval of a sample is the real time since the last sample that was written, so a late
    tick or a failed write widens the next sample instead of losing or inventing traffic. With
    `flows`, each tick also harvests the kernel's flow table into it and writes what it keeps in
    the sample's transaction; what a failed write did not store stays in its memory.
    """

    PRUNE_EVERY = 10  # ticks; each prune deletes at most a batch per tier

    def __init__(
        self, run: SamplerRun, read: ReadCounters, started: float, flows: FlowTracker | None = None
    ) -> None:
        self.run = run
        self.read = read
        self.flows = flows
        self.last_written = started  # time.monotonic() of the counters the run holds
        self.last_read = started
        self.failed_writes = 0
        self.ticks = 0

    def tick(self, final: bool = False) -> Sample | None:
        """Record the interval since the last sample; `final` writes every flow minute kept."""
        # Harvest before reading: the counters' flows_dropped then covers this harvest.
        flows = self.flows.harvest() if self.flows else {}
        counters = self.read()
        now = time.monotonic()
        timestamp = timezone.now()
        if self.flows:
            self.flows.add(flows, counters["flows_dropped"], timestamp, now - self.last_read)
        self.last_read = now
        try:
            with transaction.atomic():
                sample = self.run.record(counters, timestamp, now - self.last_written)
                minutes = self.flows.save(timestamp, final) if self.flows else []
        except DatabaseError as exc:
            self.failed_writes += 1
            log.warning("%s: sample not written (%s); retrying next tick", self.run.interface, exc)
            # A broken connection (file replaced, disk error) is reopened on the next try.
            connection.close_if_unusable_or_obsolete()
            return None
        if self.flows:
            self.flows.forget(minutes)
        self.last_written = now
        self.ticks += 1
        if self.ticks % self.PRUNE_EVERY == 0:
            self.prune()
        return sample

    def prune(self) -> None:
        try:
            prune(self.run.interface, timezone.now())
        except DatabaseError as exc:  # retention can wait for the next round
            log.warning("%s: pruning old rows failed (%s)", self.run.interface, exc)

    def flush(self, attempts: int = 5, pause: float = 1.0) -> None:
        """Write the last partial interval at shutdown, waiting out a briefly locked database."""
        for _ in range(attempts):
            if self.tick(final=True) is not None:
                return
            time.sleep(pause)
        log.error("%s: the counts since the last sample could not be written", self.run.interface)


class StatusLog:
    """A short status line at most once per period: enough to see the sampler is alive."""

    def __init__(self, run: SamplerRun, period: float = 60.0) -> None:
        self.run = run
        self.period = period
        self._reset()

    def _reset(self) -> None:
        self.since = time.monotonic()
        self.samples = 0
        self.bytes = {"rx": 0, "tx": 0}
        self.seconds = 0.0

    def add(self, sample: Sample | None, failed_writes: int) -> None:
        if sample is not None:
            self.samples += 1
            self.seconds += sample.elapsed
            self.bytes["rx"] += sample.rx_total_bytes
            self.bytes["tx"] += sample.tx_total_bytes
        if time.monotonic() - self.since < self.period:
            return
        rates = ", ".join(
            f"{direction} {bandwidth_bps(count, self.seconds) / 1e6:.3f} Mbit/s"
            for direction, count in self.bytes.items()
            if direction == "rx" or self.run.egress
        )
        log.info(
            "%s: %d samples, %s, %d failed writes so far",
            self.run.interface,
            self.samples,
            rates,
            failed_writes,
        )
        self._reset()
