"""The sampler's flows (metrics/flows.py) with a fake flow table: no root needed."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.db import OperationalError

from bpf.flows import FlowCounts, FlowKey, encode_key
from metrics.flows import FlowTracker
from metrics.models import FlowMinute, LiveFlows, SamplerRun
from metrics.sampler import Sampler
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db

A = FlowKey(17, "10.0.0.1", 9999, "10.0.0.2", 41000)
B = FlowKey(6, "2001:db8::1", 443, "2001:db8::2", 50000)
C = FlowKey(1, "10.0.0.1", 0, "10.0.0.3", 0)


def harvest(**flows: tuple[int, ...]) -> dict[bytes, FlowCounts]:
    """Each flow's (rx packets, rx bytes, tx packets, tx bytes), as a harvest returns them."""
    keys = {"a": A, "b": B, "c": C}
    return {encode_key(keys[name]): FlowCounts(*value) for name, value in flows.items()}


def by_key(rows: list[dict]) -> dict[FlowKey, dict]:
    return {FlowKey(*(row[f] for f in FlowKey._fields)): row for row in rows}


def test_live_rates_over_2_10_and_40_seconds() -> None:
    tracker = FlowTracker(start_run(), top=20, interval=1.0)
    # A: 1000 bytes in every second for 40 s; B: 500 bytes out, only in the last 5 seconds.
    for second in range(1, 41):
        flows = harvest(a=(10, 1000, 0, 0), **({"b": (0, 0, 5, 500)} if second > 35 else {}))
        tracker.add(flows, 0, at(second), 1.0)
    rows = by_key(tracker.live_rows())
    assert rows[A]["rx_bps"] == [8000.0, 8000.0, 8000.0]
    assert rows[A]["rx_pps"] == [10.0, 10.0, 10.0]
    assert rows[A]["tx_bps"] == [0.0, 0.0, 0.0]
    assert rows[B]["tx_bps"] == [4000.0, 2000.0, 500.0]  # 5 s of 4000 over 2, 10 and 40 s
    assert (rows[A]["rx_packets"], rows[A]["rx_bytes"]) == (400, 40000)
    assert (rows[B]["tx_packets"], rows[B]["tx_bytes"]) == (25, 2500)


def test_live_windows_forget_what_left_them_and_rank_by_the_shortest_first() -> None:
    tracker = FlowTracker(start_run(), top=20, interval=1.0)
    tracker.add(harvest(c=(1, 9_000_000, 0, 0)), 0, at(1), 1.0)  # big, then gone
    for second in range(2, 13):
        tracker.add(harvest(a=(1, 100, 0, 0)), 0, at(second), 1.0)
    rows = tracker.live_rows()
    # C is outside 2 s and 10 s, A inside both: A first although C has more bytes over 40 s.
    assert [FlowKey(*(r[f] for f in FlowKey._fields)) for r in rows] == [A, C]
    assert rows[1]["rx_bps"][:2] == [0.0, 0.0]
    for second in range(13, 60):
        tracker.add({}, 0, at(second), 1.0)
    assert tracker.live_rows() == [] and all(not sums for sums in tracker.sums)


def test_minute_top_keeps_the_top_by_bytes_and_the_top_by_packets() -> None:
    tracker = FlowTracker(start_run(), top=1, interval=1.0)
    sums = {
        encode_key(A): FlowCounts(100, 6000, 0, 0),  # most packets
        encode_key(B): FlowCounts(2, 9000, 0, 0),  # most bytes
        encode_key(C): FlowCounts(50, 5000, 0, 0),  # neither
    }
    rows = tracker.minute_top(sums)
    assert {(r["local"], r["remote"]) for r in rows} == {(A.local, A.remote), (B.local, B.remote)}


class FakeTable:
    """A flow table whose harvests are given in advance; the kernel's drop count with them."""

    def __init__(self, harvests: list[Mapping[bytes, FlowCounts]]) -> None:
        self.harvests = list(harvests)
        self.dropped = 0

    def harvest_flows(self) -> dict[str, Mapping[bytes, FlowCounts]]:
        return {"eth0": self.harvests.pop(0)}

    def read(self) -> dict[str, dict[str, int]]:
        return {"eth0": counters(flows_dropped=self.dropped)}


def sampler_of(run: SamplerRun, table: FakeTable) -> Sampler:
    sampler = Sampler(table, interval=1.0, flow_top=20)
    sampler.watch(run, started=0.0)
    return sampler


@pytest.fixture
def clock(monkeypatch):
    """The sampler's clocks, monotonic and wall: seconds after T0, set by the test."""
    now = [0.0]
    monkeypatch.setattr("metrics.sampler.time.monotonic", lambda: now[0])
    monkeypatch.setattr("metrics.sampler.timezone.now", lambda: at(now[0]))
    return now


def stored() -> dict[tuple, tuple]:
    return {
        (row.start, row.local_port, row.remote_port): (row.rx_packets, row.rx_bytes)
        for row in FlowMinute.objects.all()
    }


def test_minutes_are_written_when_they_end_and_at_the_last_flush(clock) -> None:
    run: SamplerRun = start_run(started_at=at(0))
    table = FakeTable([harvest(a=(1, 100, 0, 0))] * 3)
    sampler = sampler_of(run, table)
    clock[0] = 59.5  # an interval that starts in minute 0
    sampler.tick()
    assert stored() == {}
    clock[0] = 61.0  # starts in minute 0 too, and the next one will not: minute 0 is complete
    sampler.tick()
    assert stored() == {(at(0), 9999, 41000): (2, 200)}
    clock[0] = 62.0
    table.dropped = 3
    sampler.tick()
    live = LiveFlows.objects.get(run=run)
    # Three intervals, all inside the last 40: the window covers their 62 s.
    assert (live.timestamp, live.seconds, live.dropped) == (at(62), 62.0, 3)
    assert [row["rx_bytes"] for row in live.flows] == [300]
    table.harvests = [{}]
    clock[0] = 62.5
    sampler.flush()
    assert stored() == {(at(0), 9999, 41000): (2, 200), (at(60), 9999, 41000): (1, 100)}


# Not in a test transaction: see test_sampler's test of a failed write.
@pytest.mark.django_db(transaction=True)
def test_a_failed_write_keeps_the_flows_for_the_next(clock, monkeypatch) -> None:
    run = start_run(started_at=at(0))
    table = FakeTable([harvest(a=(1, 100, 0, 0))] * 3)
    sampler = sampler_of(run, table)
    original = FlowMinute.objects.bulk_create
    monkeypatch.setattr(
        FlowMinute.objects,
        "bulk_create",
        lambda rows: (_ for _ in ()).throw(OperationalError("locked")),
    )
    clock[0] = 59.0
    sampler.tick()
    clock[0] = 61.0
    assert sampler.tick() is None  # minute 0 is due but the database is locked
    monkeypatch.setattr(FlowMinute.objects, "bulk_create", original)
    clock[0] = 62.0
    sampler.tick()
    assert stored() == {(at(0), 9999, 41000): (2, 200)}  # written once, with both intervals
