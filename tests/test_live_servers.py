"""Several web processes on one database: each delivers every sample to its own clients.

Two daphne servers (`manage.py runserver`) on one scratch database, a WebSocket client on each,
and a writer process that records known samples through SamplerRun.record, as the sampler does.
CI runs it on both back ends: under DATABASE_URL and REDIS_URL each server LISTENs for the
sampler's NOTIFY and both share one Redis channel layer (each into a group of its own, so each
client gets each sample once); on SQLite with the in-memory layer each server polls.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.processes import WebServer, db_rows, live_messages, migrated_env, wait_for
from tests.writer import Writer

IFACE = "eth7"
DELTA = {
    "rx_total_packets": 3,
    "rx_total_bytes": 1_500,
    "tx_total_packets": 2,
    "tx_total_bytes": 180,
}
# Seconds to wait after each write: 0 writes the next one at once (two ticks, or a fleet's
# hosts, committed together).
PAUSES = [0.3, 0, 0, 0.3, 1.2, 0, 0.3, 0.05, 0.05]


def listeners(env: dict[str, str]) -> int:
    """Connections LISTENing on the servers' PostgreSQL database."""
    [(count,)] = db_rows(
        env,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE ?",
        "LISTEN %",
    )
    return int(count)


def test_two_web_servers_each_deliver_every_sample_to_their_clients(tmp_path: Path) -> None:
    env = migrated_env(tmp_path / "live.sqlite3")
    writer = Writer(env, tmp_path / "writer.log")
    servers = [WebServer(env, tmp_path / f"web-{n}.log") for n in (1, 2)]
    try:
        for server in servers:
            server.wait_healthy()
        writer("start", key="a", iface=IFACE)
        writer("add", key="a", delta=DELTA)  # the latest sample, sent on connect
        with (
            live_messages(servers[0].port, IFACE) as first,
            live_messages(servers[1].port, IFACE) as second,
        ):
            wait_for(lambda: first and second, 10, "the latest sample on each connection")
            if "DATABASE_URL" in env:  # each server's relay holds one LISTEN connection
                wait_for(lambda: listeners(env) == 2, 10, "both servers to LISTEN")
            for pause in PAUSES:
                writer("add", key="a", delta=DELTA)
                time.sleep(pause)
            count = 1 + len(PAUSES)
            wait_for(
                lambda: len(first) >= count and len(second) >= count, 10, "every sample on both"
            )
            time.sleep(0.5)  # and nothing more
        for server in servers:
            server.ensure_running()
    finally:
        for server in servers:
            server.stop()
        writer.close()

    expected = [n * DELTA["rx_total_packets"] for n in range(1, count + 1)]
    for messages in (first, second):
        assert [m["totals"]["rx"]["packets"] for m in messages] == expected
        assert [m["totals"]["tx"]["bytes"] for m in messages] == [
            n * DELTA["tx_total_bytes"] for n in range(1, count + 1)
        ]
        assert {(m["interface"], m["packets_per_sec"], m["bandwidth_bps"]) for m in messages} == {
            (IFACE, 5.0, (1_500 + 180) * 8.0)
        }
    assert [m["timestamp"] for m in first] == [m["timestamp"] for m in second]
    assert sorted({m["timestamp"] for m in first}) == [m["timestamp"] for m in first]
    assert len({m["timestamp"] for m in first}) == count
