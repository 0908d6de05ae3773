"""Samples of interface traffic, their per-minute and per-hour rollups, and the sampler runs.

Each row carries one counter column per direction x class x unit (``rx_tcp_bytes`` ...), named
after bpf.classes so the kernel's counters map onto columns one to one. A Sample holds the
counts of one interval; a SamplerRun holds the cumulative counts at its last sample, so that
realtime totals are one row read, never a sum over the run's history. MinuteRollup and
HourRollup hold the sums of the samples that started inside their bucket, and the peak
per-second rates among them, so long windows read a few rows and peaks stay exact.

Flows (the kernel's flow table, bpf/flows.py) are kept apart: FlowMinute holds the top flows of
each minute, LiveFlows the last 40 seconds of each run for the dashboard's top-talkers table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from django.conf import settings
from django.db import models, transaction
from django.db.models import Case, F, When, Window
from django.db.models.functions import RowNumber

from bpf.classes import ALL_COUNTER_NAMES, DIRECTIONS
from metrics import rates, tiers
from metrics.announce import announce
from metrics.batch import add_rows, insert_rows, update_rows
from metrics.selection import HOST_TOTAL

if TYPE_CHECKING:  # the columns that the add_to_class loops below add: counter_attributes.py
    from metrics.counter_attributes import CounterAttributes, PeakAttributes
else:
    from metrics.counter_attributes import NO_BASE

    CounterAttributes = PeakAttributes = NO_BASE


class CounterColumns(models.Model, CounterAttributes):
    class Meta:
        abstract = True

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ALL_COUNTER_NAMES}

    def total_bytes(self) -> int:
        return self.rx_total_bytes + self.tx_total_bytes

    def total_packets(self) -> int:
        return self.rx_total_packets + self.tx_total_packets


for _name in ALL_COUNTER_NAMES:
    CounterColumns.add_to_class(_name, models.BigIntegerField(default=0))


# Which run speaks for an interface: the one with the newest sample. A run whose samples all
# expired (last_sample then null) comes after those with one, the newest started first. Among
# runs of one sampler's tick (one timestamp), the host total first: it is what an answer for no
# interface in particular shows.
_NEWEST_SAMPLE_FIRST = (
    F("last_sample__timestamp").desc(nulls_last=True),
    Case(When(interface=HOST_TOTAL, then=0), default=1),
    "-started_at",
    "-pk",
)


class HostQuerySet(models.QuerySet["Host"]):
    def local(self) -> Host:
        """This host's row (settings.NETMETRICS_HOST_ID), made on its first run and renamed
        when its name has changed since."""
        host, _ = self.update_or_create(
            id=settings.NETMETRICS_HOST_ID, defaults={"name": settings.NETMETRICS_HOST_NAME}
        )
        return host


class Host(models.Model):
    """A machine whose sampler writes here. Its id is made once (settings.NETMETRICS_HOST_ID)
    and survives renames; its name is what it was called when its sampler last started."""

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=255, help_text="NETMETRICS_HOST_NAME, else its hostname")
    first_seen = models.DateTimeField(auto_now_add=True)
    backlog = models.PositiveIntegerField(
        default=0,
        help_text="ticks its sampler spooled while this database did not answer and has yet "
        "to write: catching up while not 0",
    )

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def spread(self, purpose: bytes = b"") -> float:
        """A fraction in [0, 1), the same at every start and spread evenly over a fleet by a
        hash of the purpose and the id (each purpose's independent of the others'): so that a
        fleet's samplers, started together or not, do not all do the same work at once."""
        digest = hashlib.sha256(purpose + self.id.bytes).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def tick_phase(self, interval: float) -> float:
        """Seconds after each wall-clock multiple of the interval at which this host's sampler
        ticks when it writes to a central database. On the whole second, every NTP-synced
        sampler of a fleet would commit in the same few milliseconds, and the last of 500
        after the next second began (README, "Fleet scale")."""
        return self.spread() * interval

    def prune_slot(self, every: int) -> int:
        """Which of every `every` ticks this host's sampler starts a round of pruning on
        (metrics.sampler.Sampler.PRUNE_EVERY): with samplers started together, a fleet's
        rounds would otherwise fall on the same ticks, 500 hosts' deletes at once."""
        return int(self.spread(b"prune") * every)


@dataclass(frozen=True)
class Series:
    """One interface of one host: what its samples, rollups and flow minutes are kept by."""

    host_id: UUID
    interface: str

    def filter(self) -> dict[str, object]:
        """The lookups that select its rows."""
        return {"host_id": self.host_id, "interface": self.interface}


@dataclass(frozen=True)
class Recording:
    """One run's part of a tick: the kernel's cumulative counters now, the real seconds since
    its last sample, and for the host total the interfaces those counters sum."""

    run: SamplerRun
    counters: Mapping[str, int]
    elapsed: float
    members: list[str] | None = None


class SamplerRunQuerySet(models.QuerySet):
    def record(self, recordings: Sequence[Recording], timestamp: datetime) -> list[Sample]:
        """Store each run's interval since its last recorded sample, from the kernel's
        cumulative counters: the samples, their rollups and the runs' new totals, in a few
        statements whatever the number of runs (metrics/batch.py says why).

        The delta is taken against each run's own cumulative columns, which change only when
        the write succeeds: after a failed write (database locked, disk full) the next call
        covers the whole gap, so no count is lost or counted twice.
        """
        samples = [
            Sample(
                run=rec.run,
                host_id=rec.run.host_id,
                interface=rec.run.interface,
                start=timestamp - timedelta(seconds=rec.elapsed),
                timestamp=timestamp,
                elapsed=rec.elapsed,
                **{name: rec.counters[name] - getattr(rec.run, name) for name in ALL_COUNTER_NAMES},
            )
            for rec in recordings
        ]
        runs = [rec.run for rec in recordings]
        before = [{name: getattr(run, name) for name in SamplerRun.RECORDED_FIELDS} for run in runs]
        try:
            # No savepoint inside the sampler's own transaction: a failure rolls all of it back.
            with transaction.atomic(savepoint=False):
                insert_rows(Sample, samples)
                for tier in tiers.ROLLUPS:
                    tier.rollup_model.objects.add(samples)
                for rec, sample in zip(recordings, samples, strict=True):
                    rec.run._count(rec, sample)
                update_rows(SamplerRun, runs, SamplerRun.RECORDED_FIELDS)
                # PostgreSQL: one NOTIFY for the tick, delivered at commit (metrics/announce.py).
                announce(self.db, [run.pk for run in runs])
        except BaseException:
            for run, fields in zip(runs, before, strict=True):
                for name, value in fields.items():
                    setattr(run, name, value)
            raise
        return samples

    def speaking(self) -> SamplerRunQuerySet:
        """Per interface, the run that speaks for it, newest sample first: the one rule by
        which realtime, summaries, flows, /api/interfaces, /metrics and the live feed pick the
        run whose totals, mode and flow table they show.

        Only runs that recorded something speak; a newer run without a sample yet does not
        silence the older one that has the interface's newest sample.
        """
        # One pass over the runs (a window function), not a correlated subquery per run.
        newest_first = Window(
            RowNumber(), partition_by=[F("host"), F("interface")], order_by=_NEWEST_SAMPLE_FIRST
        )
        return (
            self._recorded()
            .annotate(newest_first=newest_first)
            .filter(newest_first=1)
            .order_by(*_NEWEST_SAMPLE_FIRST)
        )

    def latest_for(self, interface: str | None, host: UUID | None = None) -> SamplerRun | None:
        """The run speaking for interface (of the host with this id, else of any host); without
        an interface, the run with the newest sample (of that host, else of all).

        The first run by speaking()'s order, read without its window function: the same rule,
        a plain ORDER BY ... LIMIT 1 on the one interface (or on all of them).
        """
        runs = self._recorded()
        if host is not None:
            runs = runs.filter(host_id=host)
        if interface is not None:
            runs = runs.filter(interface=interface)
        return runs.order_by(*_NEWEST_SAMPLE_FIRST).first()

    def interfaces(self, host: Host | None = None) -> list[str]:
        """The interfaces some run (of host) speaks for, by name: those of runs that recorded
        anything."""
        runs = self._recorded() if host is None else self._recorded().filter(host=host)
        # order_by() replaces the model's ordering (-started_at), which DISTINCT would add to.
        names = runs.order_by("interface").values_list("interface", flat=True)
        return list(names.distinct())

    def _recorded(self) -> SamplerRunQuerySet:
        """Runs that recorded something: only they speak."""
        return self.filter(measured_seconds__gt=0).select_related("last_sample", "host")


class SamplerRun(CounterColumns):
    """One interface's counting, from zero; counters are cumulative since it started. A run
    outlives its sampler process when the kernel's counters do (kernel_token): the next
    sampler continues it."""

    MODES = [
        ("native", "native XDP"),
        ("skb", "socket-buffer path: TC ingress classifier"),
        ("host", "host total: the sum of the interfaces that carry no one else's traffic"),
    ]

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="runs")
    interface = models.CharField(max_length=15, db_index=True)
    mode = models.CharField(max_length=8, choices=MODES)
    egress = models.BooleanField(help_text="whether outgoing traffic is measured (TC egress)")
    interval = models.FloatField(default=1.0, help_text="seconds between samples")
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_sample = models.ForeignKey(
        "Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    measured_seconds = models.FloatField(default=0.0, help_text="sum of the samples' intervals")
    peak_bandwidth_bps = models.FloatField(default=0.0)
    flow_table = models.PositiveIntegerField(
        default=0, help_text="entries of the kernel's flow table; 0: flows off"
    )
    members = models.JSONField(
        default=list,
        blank=True,
        help_text="the host total's: the interfaces its latest sample sums; empty for others",
    )
    kernel_token = models.BigIntegerField(
        null=True,
        blank=True,
        db_index=True,
        help_text="ties the run to the kernel's counters, which outlive the sampler (pinned in "
        "bpffs): a sampler that finds them still counting continues this run",
    )

    objects = SamplerRunQuerySet.as_manager()

    # A run is live while it has a sample newer than this many intervals: the API's
    # sampler_running and status, /metrics' sampler_up, and the dashboard's stale threshold.
    LIVE_INTERVALS = 3
    # What record() changes: a caller whose transaction around it rolls back puts them back.
    RECORDED_FIELDS = (
        *ALL_COUNTER_NAMES,
        "last_sample",
        "measured_seconds",
        "peak_bandwidth_bps",
        "members",
    )

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.interface} on {self.host} from {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_total(self) -> bool:
        return self.interface == HOST_TOTAL

    @property
    def series(self) -> Series:
        return Series(self.host_id, self.interface)

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this run measures: rx, and tx unless egress is off."""
        return DIRECTIONS if self.egress else DIRECTIONS[:1]

    def is_running(self, now: datetime) -> bool:
        """A run is live while it has a sample newer than LIVE_INTERVALS intervals."""
        if self.stopped_at is not None or self.last_sample is None:
            return False
        age = (now - self.last_sample.timestamp).total_seconds()
        return age < self.LIVE_INTERVALS * self.interval

    def status(self, now: datetime) -> str:
        """running; stopped (it said so); or stale: no fresh sample, never stopped (killed?)."""
        if self.is_running(now):
            return "running"
        return "stopped" if self.stopped_at else "stale"

    def record(
        self,
        counters: Mapping[str, int],
        timestamp: datetime,
        elapsed: float,
        members: list[str] | None = None,
    ) -> Sample:
        """Store the interval since the last recorded sample (see SamplerRunQuerySet.record)."""
        [sample] = SamplerRun.objects.record(
            [Recording(self, counters, elapsed, members)], timestamp
        )
        return sample

    def _count(self, rec: Recording, sample: Sample) -> None:
        """Take in a recorded sample: the cumulative counters, its time and its peak."""
        for name in ALL_COUNTER_NAMES:
            setattr(self, name, rec.counters[name])
        self.last_sample = sample
        self.measured_seconds += rec.elapsed
        peak = rates.rate(sample.counters(), DIRECTIONS, "total", "bytes", rec.elapsed)
        self.peak_bandwidth_bps = max(self.peak_bandwidth_bps, peak)
        if rec.members is not None:
            self.members = rec.members

    def resume(self, pid: int) -> None:
        """Continue the run in a new sampler process, from its last sample."""
        self.pid = pid
        self.stopped_at = None
        self.save(update_fields=["pid", "stopped_at"])

    def last_written(self) -> datetime:
        """When the run's counts were last written: its last sample's end, else its start."""
        return self.last_sample.timestamp if self.last_sample else self.started_at

    def stop(self, stopped_at: datetime) -> None:
        self.stopped_at = stopped_at
        self.save(update_fields=["stopped_at"])


class Sample(CounterColumns):
    """The traffic of one interval (normally one second) on one interface.

    ``start`` and ``timestamp`` are when the interval began and ended; ``elapsed`` is its real
    length in seconds, so rates stay right when a tick is late. Windows and rollup buckets
    take a sample by its start.
    """

    run = models.ForeignKey(SamplerRun, on_delete=models.CASCADE, related_name="samples")
    # The run's host and interface again, so that a series' rows are read by one index.
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+", db_index=False)
    interface = models.CharField(max_length=15)
    start = models.DateTimeField()
    timestamp = models.DateTimeField()
    elapsed = models.FloatField()

    class Meta:
        ordering = ["-start"]
        # (host, interface, start) serves every query of one series; (start) the admin's
        # newest-first list of all of them.
        indexes = [
            models.Index(fields=["host", "interface", "start"], name="sample_series"),
            models.Index(fields=["start"]),
        ]
        get_latest_by = "start"

    def __str__(self) -> str:
        return f"{self.interface} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


# Peak per-second rates kept by every rollup: (column, directions, unit).
PEAKS: tuple[tuple[str, tuple[str, ...], str], ...] = tuple(
    (f"{prefix}peak_{rates.RATE_NAMES[unit]}", directions, unit)
    for directions, prefix in ((DIRECTIONS, ""), (("rx",), "rx_"), (("tx",), "tx_"))
    for unit in ("bytes", "packets")
)


def peak_values(counters: Mapping[str, int], elapsed: float) -> dict[str, float]:
    """A sample's own per-second rates, under the rollups' peak column names."""
    return {
        column: rates.rate(counters, directions, "total", unit, elapsed)
        for column, directions, unit in PEAKS
    }


class RollupQuerySet(models.QuerySet["Rollup"]):
    def add(self, samples: Sequence[Sample]) -> None:
        """Add samples to their buckets in the database, creating buckets as needed.

        The samples are added up by bucket in Python (Rollup.add, as bulk fills do), then
        written in one upsert that adds the sums to a bucket already there and keeps the larger
        peaks (batch.add_rows): no read first, nothing for the ORM to compile every tick.
        """
        buckets: dict[tuple[UUID, str, datetime], Rollup] = {}
        for sample in samples:
            start = self.model.bucket_start(sample.start)
            key = (sample.host_id, sample.interface, start)
            if key not in buckets:
                buckets[key] = self.model(
                    host_id=sample.host_id, interface=sample.interface, start=start
                )
            buckets[key].add(sample)
        add_rows(
            self.model,
            list(buckets.values()),
            key=("host", "interface", "start"),
            summed=self.model.SUMMED_FIELDS,
            maxed=self.model.PEAK_FIELDS,
        )


class Rollup(CounterColumns, PeakAttributes):
    """Sums of the samples that started inside one bucket, and their peak rates."""

    STEP: timedelta

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+", db_index=False)
    interface = models.CharField(max_length=15)
    start = models.DateTimeField()
    seconds = models.FloatField(default=0.0, help_text="sum of the samples' intervals")
    samples = models.IntegerField(default=0)

    objects = RollupQuerySet.as_manager()

    # What Rollup.add changes: the sums, and the peaks (below, added by a loop).
    SUMMED_FIELDS = (*ALL_COUNTER_NAMES, "seconds", "samples")
    PEAK_FIELDS = tuple(column for column, _, _ in PEAKS)

    class Meta:
        abstract = True
        ordering = ["-start"]

    def __str__(self) -> str:
        return f"{self.interface} at {self.start:%Y-%m-%d %H:%M}"

    @classmethod
    def bucket_start(cls, moment: datetime) -> datetime:
        step = int(cls.STEP.total_seconds())
        epoch = int(moment.timestamp()) // step * step
        return datetime.fromtimestamp(epoch, tz=moment.tzinfo)

    def add(self, sample: Sample) -> None:
        """Add a sample in memory: how bulk fills and rebuilds build buckets."""
        for name in ALL_COUNTER_NAMES:
            setattr(self, name, getattr(self, name) + getattr(sample, name))
        self.seconds += sample.elapsed
        self.samples += 1
        for column, value in peak_values(sample.counters(), sample.elapsed).items():
            setattr(self, column, max(getattr(self, column), value))


for _column, _direction, _unit in PEAKS:
    Rollup.add_to_class(_column, models.FloatField(default=0.0))


class MinuteRollup(Rollup):
    STEP = tiers.MINUTE.step

    class Meta(Rollup.Meta):
        constraints = [
            models.UniqueConstraint(fields=["host", "interface", "start"], name="minute_bucket")
        ]


class HourRollup(Rollup):
    STEP = tiers.HOUR.step

    class Meta(Rollup.Meta):
        constraints = [
            models.UniqueConstraint(fields=["host", "interface", "start"], name="hour_bucket")
        ]


class FlowColumns(models.Model):
    """One flow, as the monitored host sees it (local is its side), and its traffic."""

    protocol = models.PositiveSmallIntegerField(help_text="IP protocol number (6 TCP, 17 UDP)")
    local = models.GenericIPAddressField()
    local_port = models.PositiveIntegerField(help_text="0 for protocols without ports")
    remote = models.GenericIPAddressField()
    remote_port = models.PositiveIntegerField()
    rx_packets = models.BigIntegerField(default=0)
    rx_bytes = models.BigIntegerField(default=0)
    tx_packets = models.BigIntegerField(default=0)
    tx_bytes = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class FlowMinute(FlowColumns):
    """A flow among the top flows of one minute on one interface, with its traffic that minute.

    The sampler keeps the NETMETRICS_FLOW_TOP flows with the most bytes and those with the most
    packets (at most twice that many rows a minute). A flow outside both in some minute has no
    row for it, so its sum over several minutes can fall short: top lists over long windows are
    of the flows that were at the top in some minute.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+", db_index=False)
    interface = models.CharField(max_length=15)
    start = models.DateTimeField(help_text="the minute's first second")

    class Meta:
        ordering = ["-start"]
        # As Sample's: one series' range, and the admin's newest-first list of all.
        indexes = [
            models.Index(fields=["host", "interface", "start"], name="flowminute_series"),
            models.Index(fields=["start"]),
        ]

    def __str__(self) -> str:
        return f"{self.local}:{self.local_port} - {self.remote}:{self.remote_port}"


class LiveFlows(models.Model):
    """A running sampler's top flows over its last 40 seconds, rewritten every tick.

    ``flows`` is a list of the top flows, each with its addresses, ports and protocol, its
    rates over the last 2, 10 and 40 seconds (``rx_bps``, ``tx_bps``, ``rx_pps``, ``tx_pps``:
    lists of three) and its counts over the whole window (``rx_packets`` ... ``tx_bytes``).
    See metrics/flows.py.
    """

    WINDOWS: tuple[int, ...] = (2, 10, 40)  # seconds of the rates' averages, as iftop's columns

    run = models.OneToOneField(
        SamplerRun, on_delete=models.CASCADE, primary_key=True, related_name="live_flows"
    )
    timestamp = models.DateTimeField(help_text="end of the newest interval counted")
    seconds = models.FloatField(help_text="the time the window covers: 40 s once running that long")
    dropped = models.BigIntegerField(
        default=0, help_text="flows evicted from the kernel's table unread within the window"
    )
    flows = models.JSONField(default=list)
