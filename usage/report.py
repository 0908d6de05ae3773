"""An interface's bytes per day, month or billing cycle, the current period projected at today's
pace, and each cycle against the interface's quota: what GET /api/stats/usage answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from metrics.models import Series
from usage.models import InterfacePlan
from usage.periods import Period, recent_periods
from usage.totals import Carried, Quota, carried, carried_each

# Today's pace: the average rate over this much time before now.
PACE_WINDOW = timedelta(hours=24)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class PeriodUsage:
    period: Period
    carried: Carried
    projected: Carried | None  # the current period's only
    quota: Quota | None  # cycles' only, when the plan has one

    @property
    def quota_used_percent(self) -> float | None:
        return self.quota.percent(self.carried) if self.quota else None

    @property
    def quota_projected_percent(self) -> float | None:
        return self.quota.percent(self.projected) if self.quota else None


@dataclass(frozen=True)
class Usage:
    series: Series
    by: str
    time_zone: str
    cycle_start_day: int
    quota: Quota | None
    periods: list[PeriodUsage]  # oldest first; the last holds now


def projection(so_far: Carried, last_day: Carried, now: datetime, end: datetime) -> Carried:
    """A period's bytes at its end if the rest of it goes at today's pace: the bytes so far,
    plus the last PACE_WINDOW's bytes scaled to the time left (integers, rounded down)."""

    # In whole microseconds: an int times a timedelta overflows past 10^9 days' worth.
    left, window = (end - now) // MICROSECOND, PACE_WINDOW // MICROSECOND

    def at_pace(done: int, recent: int) -> int:
        return done + recent * left // window

    return Carried(
        at_pace(so_far.rx_bytes, last_day.rx_bytes), at_pace(so_far.tx_bytes, last_day.tx_bytes)
    )


def usage(series: Series, by: str, count: int, now: datetime, time_zone: str) -> Usage:
    """The `count` periods of `by` up to the one holding now, exact from the tiers."""
    plan = InterfacePlan.objects.filter(host_id=series.host_id, interface=series.interface).first()
    cycle_start_day = plan.cycle_start_day if plan else 1
    quota = plan.quota if plan else None
    periods = recent_periods(by, count, now, ZoneInfo(time_zone), cycle_start_day)
    totals = carried_each(series, [(period.start, period.end) for period in periods])
    current = projection(totals[-1], carried(series, now - PACE_WINDOW, now), now, periods[-1].end)
    rows = [
        PeriodUsage(
            period,
            total,
            current if period is periods[-1] else None,
            quota if by == "cycle" else None,
        )
        for period, total in zip(periods, totals, strict=True)
    ]
    return Usage(series, by, time_zone, cycle_start_day, quota, rows)
