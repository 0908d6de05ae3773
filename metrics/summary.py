"""Traffic summaries over a sampler run or a time window.

A window is answered from the coarsest tier that is exact for each part of it: whole hours from
the hour rollups, whole minutes at its edges from the minute rollups, and the seconds at its very
edges from the raw samples. Samples belong to the bucket where they started. Where raw samples
have been pruned (after 48 h by default), the edges are whole minutes; past the minute
retention (30 days), whole hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import F, Max, Model, Sum

from bpf.classes import DIRECTIONS, HEALTH_NAMES, counter_name
from metrics.models import SAMPLE_BANDWIDTH_BPS, HourRollup, MinuteRollup, Sample, SamplerRun
from metrics.rtt import RttPercentiles, rtt_histogram

PERCENTAGE_CLASSES = ("tcp", "http", "https")
SUMMED = (
    *(
        counter_name(d, c, u)
        for d in DIRECTIONS
        for c, u in [("total", "packets"), ("total", "bytes")]
        + [(c, "bytes") for c in PERCENTAGE_CLASSES]
    ),
    *HEALTH_NAMES,
)
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Summary(RttPercentiles):
    interface: str
    window: str
    uptime_seconds: float
    measured_seconds: float
    peak_bandwidth_bps: float
    total_packets: int
    total_bytes: int
    class_bytes: dict[str, int]
    tcp_retransmits: int
    rtt: list[int]

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

    @classmethod
    def of(
        cls, interface: str, window: str, uptime: float, seconds: float, peak: float, sums: dict
    ) -> Summary:
        def both(name: str, unit: str) -> int:
            return sum(sums[counter_name(d, name, unit)] or 0 for d in DIRECTIONS)

        return cls(
            interface=interface,
            window=window,
            uptime_seconds=uptime,
            measured_seconds=seconds,
            peak_bandwidth_bps=peak,
            total_packets=both("total", "packets"),
            total_bytes=both("total", "bytes"),
            class_bytes={c: both(c, "bytes") for c in PERCENTAGE_CLASSES},
            tcp_retransmits=sums["tcp_retransmits"] or 0,
            rtt=rtt_histogram(sums),
        )


def run_summary(run: SamplerRun, now: datetime) -> Summary:
    """Since the run started: read from the run's own cumulative counters, one row."""
    uptime = ((run.stopped_at or now) - run.started_at).total_seconds()
    return Summary.of(
        run.interface,
        "run",
        uptime,
        run.measured_seconds,
        run.peak_bandwidth_bps,
        run.counters(),  # tx columns stay zero when egress is off
    )


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floor = _floor(moment, step)
    return floor if floor == moment else floor + step


def _floor(moment: datetime, step: timedelta) -> datetime:
    return BEGINNING + (moment - BEGINNING) // step * step


def tier_plan(since: datetime, until: datetime) -> list[tuple[type[Model], datetime, datetime]]:
    """[since, until) cut into the coarsest tier that covers each part exactly."""
    minute, hour = MinuteRollup.STEP, HourRollup.STEP
    plan: list[tuple[type[Model], datetime, datetime]] = []
    first_minute, last_minute = _ceil(since, minute), _floor(until, minute)
    if first_minute >= last_minute:
        return [(Sample, since, until)]
    first_hour, last_hour = _ceil(first_minute, hour), _floor(last_minute, hour)
    if first_hour < last_hour:
        plan.append((HourRollup, first_hour, last_hour))
        plan += [(MinuteRollup, first_minute, first_hour), (MinuteRollup, last_hour, last_minute)]
    else:
        plan.append((MinuteRollup, first_minute, last_minute))
    plan += [(Sample, since, first_minute), (Sample, last_minute, until)]
    return [(model, lo, hi) for model, lo, hi in plan if lo < hi]


def window_summary(interface: str, window: str, since: datetime, until: datetime) -> Summary:
    sums = dict.fromkeys(SUMMED, 0)
    seconds, peak = 0.0, 0.0
    for model, lo, hi in tier_plan(since, until):
        raw = model is Sample
        part = model.objects.filter(interface=interface, start__gte=lo, start__lt=hi).aggregate(
            seconds=Sum("elapsed" if raw else "seconds"),
            peak=Max(SAMPLE_BANDWIDTH_BPS if raw else F("peak_bandwidth_bps")),
            **{name: Sum(name) for name in SUMMED},
        )
        for name in SUMMED:
            sums[name] += part[name] or 0
        seconds += part["seconds"] or 0.0
        peak = max(peak, part["peak"] or 0.0)
    return Summary.of(interface, window, seconds, seconds, peak, sums)
