"""An interface's own recent baseline of each rate, for rules with `baseline` set.

Definition: the baseline of a rate at a moment is the median, over the last 7 days before the
current day (in NETMETRICS_TIME_ZONE), of that rate's average during the same hour of the day,
each read from the hour tier (HourRollup: the hour's counts over the seconds it measured). An
hour counts only if the sampler measured at least half of it (1800 s); at least 3 of the 7 days
must have one, and the median must be more than 0 (k times nothing is no level). Otherwise
there is no baseline: the rule does not fire (an alert already open stays as it is until there
is one again).

A series' baselines are computed once per hour of the day (one query of at most 7 rows) and
cached until the hour changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from statistics import median
from zoneinfo import ZoneInfo

from django.conf import settings

from alerts.values import RATES
from metrics.models import HourRollup, Series

DAYS = 7
MIN_DAYS = 3
MIN_SECONDS = 1800.0


class Baselines:
    def __init__(self) -> None:
        # series -> (the hour of the day, in the zone, and its baselines by metric)
        self._cache: dict[Series, tuple[datetime, dict[str, float]]] = {}

    def of(self, series: Series, metric: str, moment: datetime) -> float | None:
        """The series' baseline of the metric at the moment, or None."""
        hour = _hour_of(moment)
        cached = self._cache.get(series)
        if cached is None or cached[0] != hour:
            cached = self._cache[series] = (hour, _medians(series, hour))
        return cached[1].get(metric)

    def forget(self, keep: set[Series]) -> None:
        """Drop the cache of series no rule asks for any more."""
        self._cache = {s: v for s, v in self._cache.items() if s in keep}


def _hour_of(moment: datetime) -> datetime:
    zone = ZoneInfo(settings.NETMETRICS_TIME_ZONE)
    return moment.astimezone(zone).replace(minute=0, second=0, microsecond=0)


def _medians(series: Series, hour: datetime) -> dict[str, float]:
    """Each rate's baseline for the hour (a zone-aware datetime): the same wall-clock hour on
    each of the DAYS days before, as the hour tier's bucket that holds its start (zones a
    half hour off UTC)."""
    wall = hour.replace(tzinfo=None)
    starts = {
        HourRollup.bucket_start(
            (wall - timedelta(days=d)).replace(tzinfo=hour.tzinfo).astimezone(UTC)
        )
        for d in range(1, DAYS + 1)
    }
    rows = HourRollup.objects.filter(**series.filter(), start__in=starts, seconds__gte=MIN_SECONDS)
    hours = [(row.counters(), row.seconds) for row in rows]
    if len(hours) < MIN_DAYS:
        return {}
    medians = {
        metric: median(value(counters, seconds) for counters, seconds in hours)
        for metric, value in RATES.items()
    }
    return {metric: m for metric, m in medians.items() if m > 0}
