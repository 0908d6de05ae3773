"""Traffic summaries over a sampler run or a time window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Sum

from bpf.classes import DIRECTIONS, counter_name
from metrics.models import Sample, SamplerRun

PERCENTAGE_CLASSES = ("tcp", "http", "https")


@dataclass(frozen=True)
class Summary:
    interface: str
    window: str
    uptime_seconds: float
    measured_seconds: float
    peak_bandwidth_bps: float
    total_packets: int
    total_bytes: int
    class_bytes: dict[str, int]

    @property
    def avg_bandwidth_bps(self) -> float:
        return self.total_bytes * 8 / self.measured_seconds if self.measured_seconds else 0.0

    def percentage(self, cls: str) -> float:
        return 100 * self.class_bytes[cls] / self.total_bytes if self.total_bytes else 0.0

    @property
    def tcp_percentage(self) -> float:
        return self.percentage("tcp")

    @property
    def http_percentage(self) -> float:
        return self.percentage("http")

    @property
    def https_percentage(self) -> float:
        return self.percentage("https")


def _sum_directions(values: dict[str, int], cls: str, unit: str) -> int:
    return sum(values[counter_name(d, cls, unit)] or 0 for d in DIRECTIONS)


def run_summary(run: SamplerRun, now: datetime) -> Summary:
    """Since the run started: read from the run's own cumulative counters, one row."""
    counters = run.counters()  # tx columns stay zero when egress is off
    return Summary(
        interface=run.interface,
        window="run",
        uptime_seconds=((run.stopped_at or now) - run.started_at).total_seconds(),
        measured_seconds=run.measured_seconds,
        peak_bandwidth_bps=run.peak_bandwidth_bps,
        total_packets=_sum_directions(counters, "total", "packets"),
        total_bytes=_sum_directions(counters, "total", "bytes"),
        class_bytes={c: _sum_directions(counters, c, "bytes") for c in PERCENTAGE_CLASSES},
    )


def window_summary(interface: str, window: str, span: timedelta | None, now: datetime) -> Summary:
    """Over the samples of the last span (all samples when span is None)."""
    samples = Sample.objects.filter(interface=interface)
    if span is not None:
        samples = samples.filter(timestamp__gt=now - span)
    names = [
        counter_name(d, c, "bytes") for d in DIRECTIONS for c in ("total", *PERCENTAGE_CLASSES)
    ]
    names += [counter_name(d, "total", "packets") for d in DIRECTIONS]
    sums = samples.aggregate(seconds=Sum("elapsed"), **{name: Sum(name) for name in names})
    return Summary(
        interface=interface,
        window=window,
        uptime_seconds=sums["seconds"] or 0.0,
        measured_seconds=sums["seconds"] or 0.0,
        peak_bandwidth_bps=samples.peak_bandwidth_bps(),
        total_packets=_sum_directions(sums, "total", "packets"),
        total_bytes=_sum_directions(sums, "total", "bytes"),
        class_bytes={c: _sum_directions(sums, c, "bytes") for c in PERCENTAGE_CLASSES},
    )
