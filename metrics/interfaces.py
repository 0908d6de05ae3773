"""What is known about each sampled interface: its sampler's state and the span of its data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Min

from metrics.models import SamplerRun
from metrics.tiers import TIERS


@dataclass(frozen=True)
class InterfaceState:
    interface: str
    hostname: str
    status: str  # see SamplerRun.status
    first_sample: datetime | None
    last_sample: datetime | None
    run: SamplerRun


def _first_sample(interface: str) -> datetime | None:
    """The earliest start any tier still holds (coarse past the raw retention)."""
    starts = [
        tier.model._default_manager.filter(interface=interface).aggregate(first=Min("start"))[
            "first"
        ]
        for tier in TIERS
    ]
    return min((start for start in starts if start is not None), default=None)


def interface_states(now: datetime) -> list[InterfaceState]:
    """Every interface that has recorded anything, by name, with the run speaking for it."""
    return [
        InterfaceState(
            interface=run.interface,
            hostname=run.hostname,
            status=run.status(now),
            first_sample=_first_sample(run.interface),
            last_sample=run.last_sample.timestamp if run.last_sample else None,
            run=run,
        )
        for run in SamplerRun.objects.speaking().order_by("interface")
    ]
