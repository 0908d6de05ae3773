"""Traffic summaries over a sampler run or a time window.

A window is answered from the coarsest tier that is exact for each part of it: whole hours from
the hour rollups, whole minutes at its edges from the minute rollups, and the seconds at its very
edges from the raw samples. Samples belong to the bucket where they started. Where raw samples
have been pruned (after 48 h by default), the edges are whole minutes; past the minute
retention (30 days), whole hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Max, Sum

from bpf.classes import DIRECTIONS, HEALTH_NAMES, counter_name
from metrics.durations import window_start
from metrics.models import SamplerRun, Series
from metrics.rates import bandwidth_bps, count, sql_rate
from metrics.rtt import RttPercentiles, rtt_histogram
from metrics.tiers import tier_plan

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
        return bandwidth_bps(self.total_bytes, self.measured_seconds)

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
            return count(sums, DIRECTIONS, name, unit)

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


def window_bounds(
    window: str | None, since: datetime | None, until: datetime | None, now: datetime
) -> tuple[str, datetime, datetime] | None:
    """A window's label, start and end, from ?window= or ?since=[&until=]; None: the current run."""
    if window is not None:
        return window, window_start(window, now), now
    if since is not None:
        until = until or now
        return f"{since.isoformat()}/{until.isoformat()}", since, until
    return None


def window_summary(series: Series, window: str, since: datetime, until: datetime) -> Summary:
    sums = dict.fromkeys(SUMMED, 0)
    seconds, peak = 0.0, 0.0
    for tier, lo, hi in tier_plan(since, until):
        part = tier.rows(series, lo, hi).aggregate(
            seconds=Sum(tier.seconds_field),
            peak=Max(
                sql_rate(DIRECTIONS, "total", "bytes", F("elapsed"))
                if tier.raw
                else F("peak_bandwidth_bps")
            ),
            **{name: Sum(name) for name in SUMMED},
        )
        for name in SUMMED:
            sums[name] += part[name] or 0
        seconds += part["seconds"] or 0.0
        peak = max(peak, part["peak"] or 0.0)
    return Summary.of(series.interface, window, seconds, seconds, peak, sums)
