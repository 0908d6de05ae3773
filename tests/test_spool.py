"""The spool: ticks a central database did not take are kept locally and written later, in
order, through the same path, so that samples, rollups and totals are exactly those of writing
on time. A fake counter source: no root needed."""

import sqlite3
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError

from metrics.models import Host, MinuteRollup, Sample, SamplerRun
from metrics.sampler import Sampler
from metrics.spool import Spool
from tests.samples import at, start_run
from tests.test_sampler import FakeKernel

# Not in a test transaction: a failed write closes a connection whose transaction is not its
# own (see test_sampler.test_a_failed_write_loses_nothing_and_counts_nothing_twice).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock(monkeypatch):
    """The sampler's monotonic clock (from 100.0) and wall clock (from T0), in step."""
    now = [100.0]
    monkeypatch.setattr("metrics.sampler.time.monotonic", lambda: now[0])
    monkeypatch.setattr("metrics.sampler.timezone.now", lambda: at(now[0] - 100.0))
    return now


@pytest.fixture
def outage():
    """Call outage(True) to make every write fail as an unreachable server does."""
    patch = pytest.MonkeyPatch()

    def refuse(*args: object) -> None:
        raise OperationalError("connection refused")

    def set_down(down: bool) -> None:
        if down:
            patch.setattr("metrics.models.insert_rows", refuse)
        else:
            patch.undo()

    yield set_down
    patch.undo()


def counted_run() -> SamplerRun:
    """eth0's run, as the sampler starts them: with a kernel token, which names it in a spool."""
    run = start_run()
    run.kernel_token = 7
    run.save(update_fields=["kernel_token"])
    return run


def sampler_with(spool: Spool, run: SamplerRun) -> Sampler:
    sampler = Sampler(FakeKernel(), interval=1.0, spool=spool)
    sampler.watch(run, started=100.0)
    return sampler


def tick(sampler: Sampler, clock, seconds: float = 1.0):
    clock[0] += seconds
    return sampler.tick()


def test_an_outage_is_written_later_tick_by_tick(tmp_path: Path, clock, outage) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", limit=1000)
    run = counted_run()
    sampler = sampler_with(spool, run)
    tick(sampler, clock)
    outage(True)
    for _ in range(5):
        assert tick(sampler, clock) == []  # spooled, not lost
    assert (len(spool), Sample.objects.count()) == (5, 1)
    outage(False)
    tick(sampler, clock)  # the database answers, but the spool goes first: order is kept
    assert (len(spool), Sample.objects.count()) == (6, 1)
    sampler.catch_up(until=float("inf"), batch=4)
    assert len(spool) == 0
    tick(sampler, clock)  # and then straight to the database again
    samples = list(Sample.objects.order_by("start"))
    assert [s.rx_total_packets for s in samples] == [10] * 8
    assert [s.elapsed for s in samples] == [1.0] * 8
    assert [s.timestamp for s in samples] == [at(n) for n in range(1, 9)]
    run = SamplerRun.objects.get()
    assert (run.rx_total_packets, run.rx_total_bytes, run.measured_seconds) == (80, 8000, 8.0)
    assert sum(m.rx_total_bytes for m in MinuteRollup.objects.all()) == 8000
    assert sum(m.samples for m in MinuteRollup.objects.all()) == 8
    assert Host.objects.get().backlog == 0


def test_a_spool_past_its_limit_folds_the_oldest_ticks_and_keeps_their_counts(
    tmp_path: Path, clock, outage
) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", limit=3)
    run = counted_run()
    sampler = sampler_with(spool, run)
    outage(True)
    for _ in range(6):
        tick(sampler, clock)
    assert len(spool) == 3
    [(interface, since, until)] = spool.folded()
    outage(False)
    sampler.catch_up(until=float("inf"))
    samples = list(Sample.objects.order_by("start"))
    # Ticks 1-4 are one sample of 4 s; 5 and 6 are as they were.
    assert [(s.rx_total_packets, s.elapsed) for s in samples] == [(40, 4.0), (10, 1.0), (10, 1.0)]
    assert (interface, since, until) == ("eth0", at(0).isoformat(), at(4).isoformat())
    assert (samples[0].start, samples[0].timestamp) == (at(0), at(4))
    assert SamplerRun.objects.get().rx_total_packets == 60
    assert spool.folded() == []  # reported once written


def test_a_run_started_while_the_database_is_away_is_created_by_its_first_tick(
    tmp_path: Path, clock
) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", limit=100)
    host = Host(id=settings.NETMETRICS_HOST_ID, name="offline")  # as runsampler makes it then
    run = SamplerRun(
        host=host,
        interface="eth0",
        mode="skb",
        egress=True,
        pid=1,
        kernel_token=99,
        started_at=at(0),
    )
    sampler = sampler_with(spool, run)
    tick(sampler, clock)
    tick(sampler, clock)
    assert len(spool) == 2 and not SamplerRun.objects.exists()
    sampler.catch_up(until=float("inf"))
    stored = SamplerRun.objects.get()
    assert (stored.kernel_token, stored.mode, stored.rx_total_packets) == (99, "skb", 20)
    assert sampler.watched["eth0"].run.pk == stored.pk  # the sampler goes on with it
    tick(sampler, clock)
    assert SamplerRun.objects.get().rx_total_packets == 30
    assert Sample.objects.count() == 3


def test_the_spool_survives_a_restart(tmp_path: Path, clock, outage) -> None:
    path = tmp_path / "spool.sqlite3"
    run = counted_run()
    sampler = sampler_with(Spool(path, limit=100), run)
    outage(True)
    tick(sampler, clock)
    clock[0] += 0.5
    sampler.flush(attempts=1)  # the last interval of a stopping sampler: spooled too
    assert SamplerRun.objects.get().stopped_at is None
    outage(False)
    Sampler(FakeKernel(), interval=1.0, spool=Spool(path, limit=100)).catch_up(float("inf"))
    run = SamplerRun.objects.get()
    assert (run.stopped_at, run.rx_total_packets, run.measured_seconds) == (at(1.5), 20, 1.5)
    assert Sample.objects.count() == 2


def test_a_tick_written_before_a_crash_is_not_written_twice(tmp_path: Path, clock, outage) -> None:
    """The spool's delete follows the database's commit: a crash in between leaves written
    ticks in the spool, which the next catch_up skips."""
    path = tmp_path / "spool.sqlite3"
    run = counted_run()
    sampler = sampler_with(Spool(path, limit=100), run)
    outage(True)
    for _ in range(3):
        tick(sampler, clock)
    outage(False)
    copy = tmp_path / "copy.sqlite3"
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # the spool as it was before the delete
    sampler.catch_up(float("inf"))
    assert SamplerRun.objects.get().rx_total_packets == 30
    stale = Spool(copy, limit=100)
    assert len(stale) == 3
    Sampler(FakeKernel(), interval=1.0, spool=stale).catch_up(float("inf"))
    assert (len(stale), SamplerRun.objects.get().rx_total_packets) == (0, 30)
    assert Sample.objects.count() == 3


def test_ten_minutes_away_lose_nothing(tmp_path: Path, clock, outage) -> None:
    """600 ticks at 1 Hz spooled, then written: 600 one-second samples, exact."""
    spool = Spool(tmp_path / "spool.sqlite3", limit=21_600)
    sampler = sampler_with(spool, counted_run())
    outage(True)
    for _ in range(600):
        tick(sampler, clock)
    outage(False)
    assert len(spool) == 600
    sampler.catch_up(until=float("inf"))
    samples = Sample.objects.order_by("start")
    assert [(s.rx_total_packets, s.elapsed) for s in samples] == [(10, 1.0)] * 600
    assert [s.timestamp for s in samples] == [at(n) for n in range(1, 601)]
    minutes = MinuteRollup.objects.order_by("start")
    assert [(m.rx_total_packets, m.samples) for m in minutes] == [(600, 60)] * 10
    assert SamplerRun.objects.get().rx_total_bytes == 600_000
