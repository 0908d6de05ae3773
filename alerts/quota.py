"""How much of its quota an interface has used this billing cycle, kept up tick by tick.

The bytes carried since the cycle started are read from the tiers once (usage.totals.carried:
a few rows, whatever the cycle's length) when the sampler starts, when a cycle starts, and when
the interface's plan changes; after that each sample adds its own bytes. No tick reads history.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings

from metrics.models import Sample, Series
from usage.models import InterfacePlan
from usage.periods import Period, period_of
from usage.totals import Carried, carried


@dataclass
class _Cycle:
    plan: InterfacePlan
    period: Period
    used: Carried  # in the period so far


class QuotaMeters:
    """Per series with a quota (its plan), the percent of it used in the current cycle."""

    def __init__(self) -> None:
        self.plans: dict[Series, InterfacePlan] = {}
        self._cycles: dict[Series, _Cycle] = {}

    def load(self) -> None:
        """The plans with a quota, as they are now (the evaluator reloads them with its
        rules); a changed plan's cycle is read again at its next sample."""
        plans = InterfacePlan.objects.filter(quota_bytes__isnull=False)
        self.plans = {Series(p.host_id, p.interface): p for p in plans}

    def forget(self, series: Series) -> None:
        """Stop following the series: its cycle is read again if asked for later."""
        self._cycles.pop(series, None)

    def percent(self, sample: Sample) -> float | None:
        """The quota used once the sample is counted (None: the series has no quota). Each
        sample is to be given once, in order."""
        series = Series(sample.host_id, sample.interface)
        plan = self.plans.get(series)
        quota = None if plan is None else plan.quota
        if plan is None or quota is None:
            self._cycles.pop(series, None)
            return None
        cycle = self._cycles.get(series)
        if cycle is None or not _same(cycle.plan, plan) or sample.start >= cycle.period.end:
            zone = ZoneInfo(settings.NETMETRICS_TIME_ZONE)
            period = period_of("cycle", sample.start, zone, plan.cycle_start_day)
            # The sample is written already: read up to its start and add it below.
            cycle = self._cycles[series] = _Cycle(
                plan, period, carried(series, period.start, sample.start)
            )
        cycle.used += Carried(sample.rx_total_bytes, sample.tx_total_bytes)
        return quota.percent(cycle.used)


def _same(a: InterfacePlan, b: InterfacePlan) -> bool:
    return (a.cycle_start_day, a.quota_direction) == (b.cycle_start_day, b.quota_direction)
