"""Bytes an interface carried between two instants, exact from the tiers (metrics.tiers)."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, Sum

from metrics.models import Series
from metrics.tiers import Tier, tier_plan


@dataclass(frozen=True)
class Carried:
    rx_bytes: int
    tx_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.rx_bytes + self.tx_bytes

    def of(self, direction: str) -> int:
        """Bytes in one direction: rx, tx or total (InterfacePlan.quota_direction)."""
        return self.total_bytes if direction == "total" else getattr(self, f"{direction}_bytes")

    def __add__(self, other: Carried) -> Carried:
        return Carried(self.rx_bytes + other.rx_bytes, self.tx_bytes + other.tx_bytes)


@dataclass(frozen=True)
class Quota:
    """A plan's quota (InterfacePlan.quota): bytes a cycle may carry, in one direction."""

    bytes: int
    direction: str  # rx, tx or total (InterfacePlan.quota_direction)

    def percent(self, carried: Carried | None) -> float | None:
        """How much of the quota `carried` used, in percent (None: nothing to compare)."""
        return None if carried is None else 100 * carried.of(self.direction) / self.bytes


def carried(series: Series, since: datetime, until: datetime) -> Carried:
    """The bytes of the samples that started in [since, until): whole hours from the hour
    rollups, the edges from finer tiers (one query a part of metrics.tiers.tier_plan)."""
    rx = tx = 0
    for tier, lo, hi in tier_plan(since, until):
        part = tier.rows(series, lo, hi).aggregate(
            rx=Sum("rx_total_bytes"), tx=Sum("tx_total_bytes")
        )
        rx += part["rx"] or 0
        tx += part["tx"] or 0
    return Carried(rx, tx)


# Ranges ORed in one query: SQLite parses a chain of ORs as a tree at most 1000 deep.
RANGES_PER_QUERY = 200


def carried_each(series: Series, periods: Sequence[tuple[datetime, datetime]]) -> list[Carried]:
    """carried() of each of disjoint [since, until) ranges, ascending, in one query per tier.

    Each range is cut by tier_plan as carried() cuts it; the parts of a tier are merged where
    they touch (consecutive days' hour parts make one range) and read in one query (a few where
    midnight is a half hour in UTC and they do not touch), and each row is counted in the range
    its start falls in: 366 days cost three queries, not 366 x 3.
    """
    starts = [since for since, _ in periods]
    parts: dict[Tier, list[tuple[datetime, datetime]]] = defaultdict(list)
    for since, until in periods:
        for tier, lo, hi in tier_plan(since, until):
            parts[tier].append((lo, hi))
    rx, tx = [0] * len(periods), [0] * len(periods)
    for tier, ranges in parts.items():
        merged = _merged(ranges)
        for first in range(0, len(merged), RANGES_PER_QUERY):
            wanted = Q()
            for lo, hi in merged[first : first + RANGES_PER_QUERY]:
                wanted |= Q(start__gte=lo, start__lt=hi)
            rows = tier.model._default_manager.filter(wanted, **series.filter())
            for start, rx_bytes, tx_bytes in rows.order_by().values_list(
                "start", "rx_total_bytes", "tx_total_bytes"
            ):
                index = bisect_right(starts, start) - 1
                rx[index] += rx_bytes
                tx[index] += tx_bytes
    return [Carried(r, t) for r, t in zip(rx, tx, strict=True)]


def _merged(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The ranges, sorted, with those that touch or overlap joined."""
    joined: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if joined and lo <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(hi, joined[-1][1]))
        else:
            joined.append((lo, hi))
    return joined
