"""Bytes an interface carried between two instants, exact from the tiers (metrics.tiers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Sum

from metrics.models import Series
from metrics.tiers import tier_plan


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
