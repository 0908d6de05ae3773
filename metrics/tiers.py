"""The tables kept by age, and the tiers of counter rows at each resolution: the one registry.

Models take their bucket length from here, the history API its steps, summaries the tiers they
read a window from, retention what it prunes, and the settings the NETMETRICS_RETENTION_* names
and their defaults. A new tier is one line below (and its model).

No model imports at module level: the settings read this module before Django is set up, and
models.py reads it to build the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.apps import apps
from django.conf import settings

from metrics.durations import ceil, floor

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from metrics.models import Rollup, Series


@dataclass(frozen=True)
class Retained:
    """A table whose rows go once older than their retention period (by their ``start``)."""

    model_name: str  # in the metrics app
    retention: str  # key of settings.NETMETRICS_RETENTION; env NETMETRICS_RETENTION_<KEY>
    default_retention: str  # a duration (metrics.durations)

    @property
    def model(self) -> type[Model]:
        return apps.get_model("metrics", self.model_name)

    @property
    def setting(self) -> str:
        return f"NETMETRICS_RETENTION_{self.retention.upper()}"

    def rows(self, series: Series, lo: datetime, hi: datetime) -> QuerySet[Any]:
        """The series' rows that start in [lo, hi)."""
        return self.model._default_manager.filter(**series.filter(), start__gte=lo, start__lt=hi)

    def kept_since(self, now: datetime) -> datetime:
        """The oldest start this table still holds rows of."""
        return now - settings.NETMETRICS_RETENTION[self.retention]


@dataclass(frozen=True)
class Tier(Retained):
    """Counter rows of one resolution: raw samples, or rollups summing them per bucket."""

    name: str  # the history API's step: 1s, 1m, 1h
    step: timedelta
    seconds_field: str  # the column of the seconds measured in a row

    @property
    def rollup_model(self) -> type[Rollup]:
        """The model of a rollup tier (not of the raw samples')."""
        assert not self.raw, self.name
        return cast("type[Rollup]", self.model)

    @property
    def raw(self) -> bool:
        """Raw samples: one row per sampler interval, its own peak (rollups keep peak columns)."""
        return self.seconds_field == "elapsed"


SECOND = Tier("Sample", "samples", "48h", "1s", timedelta(seconds=1), "elapsed")
MINUTE = Tier("MinuteRollup", "minutes", "30d", "1m", timedelta(minutes=1), "seconds")
HOUR = Tier("HourRollup", "hours", "730d", "1h", timedelta(hours=1), "seconds")

TIERS: tuple[Tier, ...] = (SECOND, MINUTE, HOUR)  # finest first
ROLLUPS: tuple[Tier, ...] = tuple(tier for tier in TIERS if not tier.raw)
BY_NAME: dict[str, Tier] = {tier.name: tier for tier in TIERS}

# Each minute's top flows are kept by age too, though they are no counter tier.
FLOWS = Retained("FlowMinute", "flows", "7d")
RETAINED: tuple[Retained, ...] = (*TIERS, FLOWS)


Part = tuple[Tier, datetime, datetime]  # a tier and the range [lo, hi) read from it


def tier_plan(since: datetime, until: datetime) -> list[Part]:
    """[since, until) cut into the coarsest tier that covers each part exactly, coarsest first.

    Whole buckets of the coarsest tier in the middle; the parts before and after it, recursively
    from the finer tiers; raw samples at the very edges (they cover any range).
    """

    def cut(lo: datetime, hi: datetime, tiers: tuple[Tier, ...]) -> list[Part]:
        *finer, tier = tiers
        if lo >= hi:
            return []
        if not finer:
            return [(tier, lo, hi)]
        first, last = ceil(lo, tier.step), floor(hi, tier.step)
        if first >= last:
            return cut(lo, hi, tuple(finer))
        return [(tier, first, last), *cut(lo, first, tuple(finer)), *cut(last, hi, tuple(finer))]

    plan = cut(since, until, TIERS)
    return sorted(plan, key=lambda part: (-TIERS.index(part[0]), part[1]))
