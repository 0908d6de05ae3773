"""PostgreSQL's live path: the sampler's NOTIFY per tick, and the relay that LISTENs for it.

NOTIFY is PostgreSQL's, so all but the payload and read tests skip on SQLite: CI runs the suite
once under DATABASE_URL, where they run, and once on SQLite. tests/test_consumer.py runs on both
back ends; on PostgreSQL it goes through the LISTEN path too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, transaction
from django.utils import timezone

from metrics import relay as relay_module
from metrics.announce import CHANNEL, MAX_PAYLOAD, announce, announced_runs, listen_parameters
from metrics.models import Recording, Sample, SamplerRun
from metrics.relay import SampleRelay, relay
from tests.samples import counters, start_run
from tests.test_consumer import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgresql(requires_postgres) -> None:
    """NOTIFY is PostgreSQL's (conftest.requires_postgres: CI's PostgreSQL pass runs these)."""


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


def test_the_relay_reads_the_runs_named_only(django_assert_num_queries) -> None:
    """What a notification makes the relay read: the runs named, then each one's new samples
    (flows off: no live table), on any database (this is the read, not the NOTIFY)."""
    now = timezone.now()
    mine = SampleRelay()  # sends samples written from now on
    eth0, eth1 = start_run("eth0", started_at=now), start_run("eth1", started_at=now)
    tick([eth0, eth1], 5)
    tick([eth0, eth1], 9)
    with django_assert_num_queries(1 + 1):
        messages = mine._new_messages({eth1.pk})
    assert [(m["interface"], m["total_packets"]) for m in messages] == [("eth1", 5), ("eth1", 9)]
    assert mine._new_messages({eth1.pk}) == []  # each once
    assert [m["total_packets"] for m in mine._new_messages(None)] == [5, 9]  # eth0's


def test_the_relay_reads_what_is_announced_and_does_not_poll(
    postgresql: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample written without its NOTIFY is not sent until the next announced one of its run
    (the SQLite poll would send it within 0.2 s); then both are, oldest first."""
    now = timezone.now()
    run = start_run(started_at=now)
    run.record(counters(rx_total_packets=2, rx_total_bytes=200), now, 1.0)

    def unannounced(packets: int) -> None:
        with monkeypatch.context() as patch:
            patch.setattr("metrics.models.announce", lambda using, pks: None)
            run.record(counters(rx_total_packets=packets), timezone.now(), 1.0)

    @async_to_sync
    async def scenario() -> list[dict]:
        ws = connect("/ws/metrics/")
        assert (await ws.connect())[0]
        received = [await ws.receive_json_from(timeout=2)]
        # Received, this one says that the relay's first read (every active run, on
        # connecting) is behind it: from here it reads only what is announced. That read may
        # have sent it before its notification came: the quiet lets that notification's read
        # pass, so that it cannot pick up the unannounced sample.
        await sync_to_async(run.record)(counters(rx_total_packets=4), timezone.now(), 1.0)
        received.append(await ws.receive_json_from(timeout=2))
        assert await ws.receive_nothing(timeout=0.3)
        await sync_to_async(unannounced)(5)
        assert await ws.receive_nothing(timeout=1.5)
        await sync_to_async(run.record)(counters(rx_total_packets=9), timezone.now(), 1.0)
        received.append(await ws.receive_json_from(timeout=2))
        received.append(await ws.receive_json_from(timeout=2))
        await ws.disconnect()
        return received

    assert [m["totals"]["rx"]["packets"] for m in scenario()] == [2, 4, 5, 9]


def listening_backends() -> list[int]:
    """Server pids of the connections LISTENing on this database, but the test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN %%' AND pid != pg_backend_pid()"
        )
        return [pid for (pid,) in cursor.fetchall()]


def wait_until(condition: Callable[[], object], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_relay_reconnects_and_sends_what_was_written_meanwhile(
    postgresql: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The LISTEN connection is cut (as by a PostgreSQL restart): one warning, a reconnect,
    and the samples written while no one listened are sent, exactly once each."""
    monkeypatch.setattr(relay_module, "RECONNECT_SECONDS", (1.5, 1.5))
    caplog.set_level(logging.INFO, logger="netmetrics.relay")
    now = timezone.now()
    run = start_run(started_at=now)
    run.record(counters(rx_total_packets=2), now, 1.0)

    def cut_and_write() -> None:
        wait_until(lambda: len(listening_backends()) == 1)
        [pid] = listening_backends()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s::integer)", [pid])
        wait_until(lambda: not listening_backends())
        run.record(counters(rx_total_packets=3), timezone.now(), 1.0)  # heard by no one
        run.record(counters(rx_total_packets=7), timezone.now(), 1.0)

    @async_to_sync
    async def scenario() -> list[dict]:
        ws = connect("/ws/metrics/")
        assert (await ws.connect())[0]
        received = [await ws.receive_json_from(timeout=2)]
        await sync_to_async(cut_and_write)()
        received.append(await ws.receive_json_from(timeout=5))
        received.append(await ws.receive_json_from(timeout=2))
        await sync_to_async(run.record)(counters(rx_total_packets=8), timezone.now(), 1.0)
        received.append(await ws.receive_json_from(timeout=2))  # listening again
        assert await ws.receive_nothing(timeout=0.5)
        assert len(await sync_to_async(listening_backends)()) == 1
        await ws.disconnect()
        return received

    assert [m["totals"]["rx"]["packets"] for m in scenario()] == [2, 3, 7, 8]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "netmetrics.relay"]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
    assert said[0][1].startswith("relay: not listening to PostgreSQL (")
    assert relay.subscribers == 0
