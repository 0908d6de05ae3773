"""What is known about each host of a fleet: its sampler's state and its current traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from metrics import rates
from metrics.models import Host, SamplerRun
from metrics.selection import HOST_TOTAL


@dataclass(frozen=True)
class HostState:
    host: Host
    status: str  # "catching up" (Host.backlog), else that of the run with its newest sample
    # (SamplerRun.status); "idle": no sample yet
    interfaces: list[str]  # those with samples, the host total first
    last_sample: datetime | None
    rx_bps: float | None  # its newest sample's, of the host total when it has one; None unless
    tx_bps: float | None  # running (tx: also None when egress is not measured)


def host_states(now: datetime) -> list[HostState]:
    """Every host, with what the run speaking for it says (the host total where there is one:
    SamplerRun.objects.latest_for's rule), the busiest first; hosts that are not running after
    those that are, by name."""
    runs: dict[object, list[SamplerRun]] = {}
    for run in SamplerRun.objects.speaking():  # newest sample first, the host total first
        runs.setdefault(run.host_id, []).append(run)
    states = [_state(host, runs.get(host.pk, []), now) for host in Host.objects.all()]
    return sorted(states, key=lambda s: (-((s.rx_bps or 0) + (s.tx_bps or 0)), s.host.name))


def _state(host: Host, runs: list[SamplerRun], now: datetime) -> HostState:
    names = sorted((run.interface for run in runs), key=lambda name: (name != HOST_TOTAL, name))
    if not runs:
        return HostState(host, "catching up" if host.backlog else "idle", [], None, None, None)
    run = runs[0]
    sample = run.last_sample
    status = "catching up" if host.backlog else run.status(now)
    rx = tx = None
    if sample is not None and status == "running":
        counters = sample.counters()
        rx = rates.rate(counters, ("rx",), "total", "bytes", sample.elapsed)
        if run.egress:
            tx = rates.rate(counters, ("tx",), "total", "bytes", sample.elapsed)
    return HostState(host, status, names, sample.timestamp if sample else None, rx, tx)
