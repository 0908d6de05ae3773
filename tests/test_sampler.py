"""The sampler's bookkeeping, with a fake counter source: no root needed."""

import pytest
from django.db import OperationalError

from metrics.models import Sample, SamplerRun
from metrics.sampler import Sampler
from tests.samples import FakeKernel, start_run

pytestmark = pytest.mark.django_db


def sampler_of(run: SamplerRun) -> Sampler:
    sampler = Sampler(FakeKernel(), interval=1.0)
    sampler.watch(run, started=100.0)
    return sampler


@pytest.fixture
def clock(monkeypatch):
    """time.monotonic() as seen by the sampler: 100.0, then whatever the test sets."""
    now = [100.0]
    monkeypatch.setattr("metrics.sampler.time.monotonic", lambda: now[0])
    return now


def test_each_tick_writes_the_delta_over_the_real_elapsed_time(clock) -> None:
    run = start_run()
    sampler = sampler_of(run)
    clock[0] = 101.0
    sampler.tick()
    clock[0] = 102.5  # a late tick: its rates use 1.5 s, not 1 s
    sampler.tick()
    first, second = Sample.objects.order_by("pk")
    assert (first.rx_total_packets, first.rx_total_bytes, first.elapsed) == (10, 1000, 1.0)
    assert (second.rx_total_packets, second.tx_total_bytes, second.elapsed) == (10, 300, 1.5)
    run.refresh_from_db()
    assert run.last_sample == second
    assert (run.rx_total_bytes, run.tx_total_packets) == (2000, 10)
    assert run.measured_seconds == 2.5
    assert run.peak_bandwidth_bps == 1300 * 8 / 1.0


# Not in a test transaction: after a failed write the sampler drops a connection whose
# transaction state is not its own (close_if_unusable_or_obsolete), which is the test's on
# PostgreSQL (SQLite's in-memory test database ignores the close).
@pytest.mark.django_db(transaction=True)
def test_a_failed_write_loses_nothing_and_counts_nothing_twice(clock, monkeypatch) -> None:
    run = start_run()
    sampler = sampler_of(run)
    clock[0] = 101.0
    sampler.tick()

    def locked(*args: object) -> None:  # after the samples' insert: all of it rolls back
        raise OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr("metrics.models.update_rows", locked)
        clock[0] = 102.0
        assert sampler.tick() is None
    assert sampler.failed_writes == 1
    assert (Sample.objects.count(), run.rx_total_packets) == (1, 10)

    clock[0] = 103.0
    sampler.tick()
    samples = list(Sample.objects.order_by("pk"))
    assert [s.rx_total_packets for s in samples] == [10, 20]  # the second covers the failed one
    assert [s.elapsed for s in samples] == [1.0, 2.0]
    assert sum(s.rx_total_bytes for s in samples) == SamplerRun.objects.get().rx_total_bytes == 3000


def test_flush_writes_the_last_partial_interval(clock) -> None:
    run = start_run()
    sampler = sampler_of(run)
    clock[0] = 100.4
    sampler.flush()
    assert Sample.objects.get().elapsed == pytest.approx(0.4)


def test_a_sampler_starts_its_rounds_of_pruning_on_its_hosts_slot(clock, monkeypatch) -> None:
    sampler = Sampler(FakeKernel(), interval=1.0, prune_slot=3)
    sampler.watch(start_run(), started=100.0)
    pruned: list[int] = []
    monkeypatch.setattr(sampler, "prune", lambda series: pruned.append(sampler.ticks))
    for second in range(1, 26):
        clock[0] = 100.0 + second
        sampler.tick()
    assert pruned == [7, 17]  # one series: a round is one tick, every 10th, 3 before slot 0's
