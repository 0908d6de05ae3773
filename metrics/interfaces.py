"""What is known about each sampled interface: its sampler's state and the span of its data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Min

from metrics.models import SamplerRun, Series
from metrics.rates import RATE_NAMES
from metrics.snapshot import class_rates
from metrics.tiers import TIERS


@dataclass(frozen=True)
class InterfaceState:
    interface: str
    status: str  # see SamplerRun.status
    first_sample: datetime | None
    last_sample: datetime | None
    run: SamplerRun
    rates: dict[str, float] | None  # the latest sample's, both directions; None unless running

    @property
    def total(self) -> bool:
        return self.run.is_total

    @property
    def members(self) -> list[str]:
        return self.run.members

    @property
    def bandwidth_bps(self) -> float | None:
        return None if self.rates is None else self.rates[RATE_NAMES["bytes"]]

    @property
    def packets_per_sec(self) -> float | None:
        return None if self.rates is None else self.rates[RATE_NAMES["packets"]]


def _first_sample(series: Series) -> datetime | None:
    """The earliest start any tier still holds (coarse past the raw retention)."""
    starts = [
        tier.model._default_manager.filter(**series.filter()).aggregate(first=Min("start"))["first"]
        for tier in TIERS
    ]
    return min((start for start in starts if start is not None), default=None)


def _state(run: SamplerRun, now: datetime) -> InterfaceState:
    status = run.status(now)
    sample = run.last_sample
    return InterfaceState(
        interface=run.interface,
        status=status,
        first_sample=_first_sample(run.series),
        last_sample=sample.timestamp if sample else None,
        run=run,
        rates=class_rates(sample, run.directions) if sample and status == "running" else None,
    )


def interface_states(now: datetime, host: UUID | None = None) -> list[InterfaceState]:
    """Every interface (of the host with this id, else of every host) that has recorded
    anything, with the run speaking for it: by host name, then the host total first, then the
    interfaces by name."""
    runs = SamplerRun.objects.speaking()
    if host is not None:
        runs = runs.filter(host_id=host)
    states = [_state(run, now) for run in runs]
    return sorted(states, key=lambda s: (s.run.host.name, s.run.host_id, not s.total, s.interface))
