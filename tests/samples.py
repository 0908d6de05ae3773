"""Runs and samples written through the models' own code, for tests that need history."""

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bpf.classes import ALL_COUNTER_NAMES
from bpf.flows import FlowCounts
from metrics.batch import insert_rows
from metrics.models import Host, Sample, SamplerRun
from metrics.tiers import ROLLUPS

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def counters(**values: int) -> dict[str, int]:
    """Cumulative kernel counters: zero but for the given ones."""
    unknown = set(values) - set(ALL_COUNTER_NAMES)
    assert not unknown, unknown
    return {name: values.get(name, 0) for name in ALL_COUNTER_NAMES}


def start_run(
    interface: str = "eth0",
    egress: bool = True,
    started_at: datetime = T0,
    interval: float = 1.0,
    host: Host | None = None,
) -> SamplerRun:
    """A run of host, else of this host (settings.NETMETRICS_HOST_ID)."""
    return SamplerRun.objects.create(
        host=host or Host.objects.local(),
        interface=interface,
        mode="native",
        egress=egress,
        interval=interval,
        pid=4242,
        started_at=started_at,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def write_samples(run: SamplerRun, rows: Iterable[tuple[datetime, float, int, int]]) -> None:
    """Samples of run, each (start, elapsed seconds, rx bytes, tx bytes), and their rollups in
    every tier, written in bulk through the models' own rollup code: months of history in
    seconds, where recording tick by tick would take minutes. The run then counts as recorded."""
    samples = [
        Sample(
            run=run,
            host_id=run.host_id,
            interface=run.interface,
            start=start,
            timestamp=start + timedelta(seconds=elapsed),
            elapsed=elapsed,
            **counters(rx_total_bytes=rx, tx_total_bytes=tx),
        )
        for start, elapsed, rx, tx in rows
    ]
    insert_rows(Sample, samples)
    for tier in ROLLUPS:
        tier.rollup_model.objects.add(samples)
    run.measured_seconds = sum(sample.elapsed for sample in samples)
    run.last_sample = max(samples, key=lambda sample: sample.start)
    run.save(update_fields=["measured_seconds", "last_sample"])


class FakeKernel:
    """eth0's cumulative counters, which grow by 10 packets / 1000 bytes in and 5 / 300 out per
    read; no flows."""

    def __init__(self) -> None:
        self.reads = itertools.count(1)

    def read(self) -> dict[str, dict[str, int]]:
        n = next(self.reads)
        return {
            "eth0": counters(
                rx_total_packets=10 * n,
                rx_total_bytes=1000 * n,
                tx_total_packets=5 * n,
                tx_total_bytes=300 * n,
            )
        }

    def harvest_flows(self) -> dict[str, dict[bytes, FlowCounts]]:
        return {}
