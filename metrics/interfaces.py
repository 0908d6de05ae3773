"""What is known about each sampled interface: its sampler's state and the span of its data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Min

from metrics.models import HourRollup, MinuteRollup, Sample, SamplerRun


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
        model.objects.filter(interface=interface).aggregate(first=Min("start"))["first"]
        for model in (HourRollup, MinuteRollup, Sample)
    ]
    return min((start for start in starts if start is not None), default=None)


def interface_states(now: datetime) -> list[InterfaceState]:
    latest: dict[str, SamplerRun] = {}
    runs = SamplerRun.objects.filter(measured_seconds__gt=0).select_related("last_sample")
    for run in runs.order_by("started_at"):
        latest[run.interface] = run  # the newest run of each interface wins
    states = []
    for interface, run in sorted(latest.items()):
        states.append(
            InterfaceState(
                interface=interface,
                hostname=run.hostname,
                status=run.status(now),
                first_sample=_first_sample(interface),
                last_sample=run.last_sample.timestamp if run.last_sample else None,
                run=run,
            )
        )
    return states
