"""Durations written as a number and a unit (90s, 5m, 24h, 30d), for windows and retention.

No Django imports: settings read retention periods with it.
"""

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=3660)


def parse_duration(value: str) -> timedelta:
    """'5m' -> 5 minutes; ValueError says what is wrong."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a duration: use a number and a unit (s, m, h, d), e.g. 5m, 24h, 7d"
        )
    span = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if not timedelta(0) < span <= MAX_DURATION:
        raise ValueError(f"{value!r}: must be longer than 0 and at most 3660d")
    return span


# The start of "all": before any sample.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(window: str, now: datetime) -> datetime:
    """Where a window that ends now begins: a duration ('5m') before now, or 'all'."""
    return BEGINNING if window == "all" else now - parse_duration(window)


def floor(moment: datetime, step: timedelta) -> datetime:
    return BEGINNING + (moment - BEGINNING) // step * step


def ceil(moment: datetime, step: timedelta) -> datetime:
    floored = floor(moment, step)
    return floored if floored == moment else floored + step
