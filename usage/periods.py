"""Days, months and billing cycles in a time zone, as [start, end) instants.

Midnight to midnight in the zone: a day on which daylight saving starts has 23 hours, one on
which it ends 25. A cycle starting on day D runs from midnight of the Dth to midnight of the Dth
of the next month (D is 1-28, so every month has it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

BY = ("day", "month", "cycle")


@dataclass(frozen=True)
class Period:
    first_day: date  # in the zone
    start: datetime  # the zone's midnight of first_day, in UTC
    end: datetime  # exclusive, in UTC (aware datetimes of one zone subtract as wall clocks:
    # a DST day would seem 24 hours long)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def period_of(by: str, moment: datetime, zone: ZoneInfo, cycle_start_day: int = 1) -> Period:
    """The day, month or cycle that holds `moment`."""
    today = moment.astimezone(zone).date()
    if by == "day":
        first, after = today, today + timedelta(days=1)
    else:
        start_day = cycle_start_day if by == "cycle" else 1
        first = today.replace(day=start_day)
        if today.day < start_day:
            first = _add_months(first, -1)
        after = _add_months(first, 1)
    return Period(first, _midnight(first, zone), _midnight(after, zone))


def recent_periods(
    by: str, count: int, now: datetime, zone: ZoneInfo, cycle_start_day: int = 1
) -> list[Period]:
    """The `count` periods that end with the one holding `now`, oldest first."""
    periods = [period_of(by, now, zone, cycle_start_day)]
    while len(periods) < count:
        previous = periods[-1].start - timedelta(microseconds=1)
        periods.append(period_of(by, previous, zone, cycle_start_day))
    return periods[::-1]
