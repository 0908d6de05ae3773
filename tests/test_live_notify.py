"""PostgreSQL's live path: the sampler's NOTIFY per tick.

These need PostgreSQL (NOTIFY is its own); CI runs the suite once under DATABASE_URL, where they
run, and once on SQLite, where they skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from metrics.announce import CHANNEL, MAX_PAYLOAD, announce, announced_runs, listen_parameters
from metrics.models import Recording, Sample, SamplerRun
from tests.samples import counters, start_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's: set DATABASE_URL (CI runs the suite on both)")


@pytest.fixture
def listener(postgresql: None) -> Iterator[psycopg.Connection]:
    """A connection of the test's own that LISTENs as the relay does."""
    with psycopg.Connection.connect(**listen_parameters(), autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def heard(conn: psycopg.Connection, timeout: float) -> list[tuple[str, str]]:
    """(channel, payload) of the first notification that arrives within timeout, and of any
    that follow it within 0.3 s."""
    notes = list(conn.notifies(timeout=timeout, stop_after=1))
    if notes:
        notes += conn.notifies(timeout=0.3)
    return [(n.channel, n.payload) for n in notes]


def tick(runs: list[SamplerRun], packets: int) -> None:
    """One tick of the sampler: every run's sample, in one record() call."""
    recordings = [
        Recording(run, counters(rx_total_packets=packets, rx_total_bytes=100 * packets), 1.0)
        for run in runs
    ]
    SamplerRun.objects.record(recordings, timezone.now())


def test_announced_runs_reads_payloads() -> None:
    assert announced_runs([]) == set()
    assert announced_runs(["3,1", "2", "3"]) == {1, 2, 3}
    assert announced_runs(["3", ""]) is None  # too many runs to name: every active run
    assert announced_runs(["hello"]) is None  # someone else's NOTIFY on the channel


def test_a_tick_is_one_notification_naming_its_runs_sent_at_commit(
    listener: psycopg.Connection,
) -> None:
    now = timezone.now()
    eth0, eth1, idle = (start_run(name, started_at=now) for name in ("eth0", "eth1", "eth2"))
    with transaction.atomic():  # the sampler's own transaction, with its flows
        tick([eth1, eth0], 5)
        assert heard(listener, 0.3) == []  # not before the samples can be read
    assert heard(listener, 2) == [(CHANNEL, f"{eth0.pk},{eth1.pk}")]
    tick([idle], 1)
    assert heard(listener, 2) == [(CHANNEL, str(idle.pk))]


def test_a_rolled_back_tick_announces_nothing(listener: psycopg.Connection) -> None:
    run = start_run(started_at=timezone.now())
    with pytest.raises(RuntimeError), transaction.atomic():
        tick([run], 5)
        raise RuntimeError("the sampler's flows failed to write")
    assert heard(listener, 1) == []
    assert not Sample.objects.exists()
    tick([run], 6)  # the listener hears a tick that is written
    assert heard(listener, 2) == [(CHANNEL, str(run.pk))]


def test_too_many_runs_for_a_payload_name_none(listener: psycopg.Connection) -> None:
    pks = range(10**6, 10**6 + MAX_PAYLOAD // 7)  # 8-character items: too long
    with transaction.atomic():
        announce("default", pks)
    assert heard(listener, 2) == [(CHANNEL, "")]
