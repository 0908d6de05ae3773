"""Alerts for real: known traffic through a veth pair into a network namespace, counted by the
kernel programs and a real `runsampler`, whose rules open and close alerts in the database with
one notification per transition per receiver, which a web server's worker posts to a local
webhook receiver exactly once each.

Every datagram is UDP_FRAME bytes on the wire and the link carries nothing else (tests/netns.py),
so the bytes received are exact; only the rates depend on the sender's pacing, and each phase
keeps well inside its band: about 70 datagrams/s against a level of 40, about 23 between the
levels (15 and 40), then none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.netns import UDP_FRAME, VethPair, veth_pair
from tests.processes import Managed, WebServer, db_rows, manage_ok, migrated_env, wait_for
from tests.receivers import Receiver

BITS = UDP_FRAME * 8
LEVEL, CLEAR = 40 * BITS, 15 * BITS  # rx_bps: 40 and 15 datagrams a second
FAST, SLOW = (240, 1 / 80), (75, 1 / 25)  # (datagrams, pause after each): about 3 s each
QUOTA = 400 * UDP_FRAME  # 90 % is the 360th datagram
BURST = (50, 1 / 25)  # under the level: the bandwidth rule stays closed


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """The rule's webhook: a local receiver that records what the web server's worker posts."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair() as pair:
        yield pair


def rows(env: dict[str, str], sql: str, *params: object) -> list[tuple]:
    return db_rows(env, sql, *params)


def alerts(env: dict[str, str], rule: str) -> list[tuple]:
    """(id, started_at, ended_at, value, peak) of the rule's alerts, oldest first."""
    return rows(
        env,
        "SELECT a.id, a.started_at, a.ended_at, a.value, a.peak FROM alerts_alert a "
        "JOIN alerts_alertrule r ON r.id = a.rule_id WHERE r.name = ? ORDER BY a.id",
        rule,
    )


def instant(value: object) -> float:
    """A timestamp column as Unix time (sqlite3 gives text, psycopg datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.timestamp()


def samples(env: dict[str, str], iface: str) -> list[tuple[float, float, int]]:
    """(timestamp, rx bit/s, rx bytes) of the interface's samples, oldest first."""
    found = rows(
        env,
        "SELECT timestamp, rx_total_bytes, elapsed FROM metrics_sample WHERE interface = ? "
        "ORDER BY timestamp",
        iface,
    )
    return [(instant(t), octets * 8 / elapsed, octets) for t, octets, elapsed in found]


def test_rules_open_and_close_alerts_on_known_traffic(
    pair: VethPair, tmp_path: Path, webhook: Receiver
) -> None:
    env = {**migrated_env(tmp_path / "netmetrics.sqlite3"), "NETMETRICS_NOTIFY": "1"}
    iface = pair.host_iface
    setup = (
        "from alerts.models import AlertRule\n"
        "from metrics.models import Host\n"
        "from usage.models import InterfacePlan\n"
        f"AlertRule.objects.create(name='busy', interface={iface!r}, metric='rx_bps',\n"
        f"    level={LEVEL}, clear_level={CLEAR}, webhook={webhook.url!r},\n"
        "    emails='ops@example.com')\n"
        f"InterfacePlan.objects.create(host=Host.objects.local(), interface={iface!r},\n"
        f"    quota_bytes={QUOTA}, quota_direction='rx')\n"
    )
    manage_ok(env, "making the rules", "shell", "-c", setup)
    sampler = Managed(
        env,
        tmp_path / "sampler.log",
        "runsampler",
        "--iface",
        iface,
        "--no-flows",
        "--no-tcp-health",
    )
    web = WebServer(env, tmp_path / "web.log")  # its worker delivers the notifications
    try:
        web.wait_healthy()
        wait_for(lambda: not sampler.running() or samples(env, iface), 60, "the first sample")
        sampler.ensure_running()
        crossing = time.time()
        assert pair.sending_udp(*FAST).wait(30) == 0
        [(_, started, ended, _, _)] = wait_for(lambda: alerts(env, "busy"), 5, "the alert")
        assert ended is None
        assert instant(started) <= crossing + 2.0  # within 2 ticks of the traffic crossing
        assert pair.sending_udp(*SLOW).wait(30) == 0
        between = time.time()
        assert alerts(env, "busy")[0][2] is None  # still open between the levels
        wait_for(lambda: alerts(env, "busy")[0][2], 5, "the alert to close")
        assert pair.sending_udp(*BURST).wait(30) == 0
        wait_for(lambda: alerts(env, f"{pair_host(env)} {iface}: quota 90%"), 5, "90 % of quota")
        webhook.wait_posts(2, timeout=30)  # the bandwidth alert's opening and closing
        time.sleep(2)  # two more polls of the worker: nothing more is posted
    finally:
        web.stop()
        assert sampler.stop() == 0, sampler.output()
    seen = samples(env, iface)
    [(alert_id, started, ended, value, peak)] = alerts(env, "busy")
    started, ended = instant(started), instant(ended)
    during = [bps for t, bps, _ in seen if started <= t < ended]
    # Opened on the first sample at or above the level; closed on the first under the lower
    # level after it, and on no sample in between (some were between the levels, none under).
    first = next(t for t, bps, _ in seen if bps >= LEVEL)
    assert started == first
    assert value == during[0] >= LEVEL
    assert peak == max(during)
    assert min(during) >= CLEAR
    assert any(CLEAR <= bps < LEVEL for t, bps, _ in seen if started < t < between)
    assert next(bps for t, bps, _ in seen if t == ended) < CLEAR
    notices = rows(
        env,
        "SELECT event, channel, target, payload FROM alerts_notification WHERE alert_id = ? "
        "ORDER BY id",
        alert_id,
    )
    assert [n[:3] for n in notices] == [
        ("opened", "webhook", webhook.url),
        ("opened", "email", "ops@example.com"),
        ("closed", "webhook", webhook.url),
        ("closed", "email", "ops@example.com"),
    ]
    payloads = [json.loads(p) if isinstance(p, str) else p for *_, p in notices]
    assert payloads[0] == payloads[1] and payloads[2] == payloads[3]
    opened, closed = payloads[0], payloads[2]
    assert opened["event"] == "opened" and closed["event"] == "closed"
    assert closed["alert"] == {
        "id": alert_id,
        "rule": "busy",
        "metric": "rx_bps",
        "condition": "above",
        "level": LEVEL,
        "clear_level": CLEAR,
        "baseline": False,
        "host": pair_host(env),
        "host_id": closed["alert"]["host_id"],
        "interface": iface,
        "started_at": closed["alert"]["started_at"],
        "ended_at": closed["alert"]["ended_at"],
        "value": value,
        "peak": peak,
    }
    assert datetime.fromisoformat(closed["alert"]["started_at"]).timestamp() == started
    assert datetime.fromisoformat(closed["alert"]["ended_at"]).timestamp() == ended
    assert opened["alert"] == {**closed["alert"], "ended_at": None, "peak": value}
    # Delivered by the web server's worker: each transition once, in order, as queued.
    assert [post.body for post in webhook.posts] == [opened, closed]
    # The quota: 75 % was passed by the 300th datagram (of 315 before the burst), 90 % by the
    # 360th, 100 % never (365 of 400).
    received = 0
    crossed: dict[int, tuple[float, float]] = {}
    for t, _, octets in seen:
        received += octets
        for percent in (75, 90, 100):
            if 100 * received >= percent * QUOTA:
                crossed.setdefault(percent, (t, 100 * received / QUOTA))
    assert received == (FAST[0] + SLOW[0] + BURST[0]) * UDP_FRAME
    for percent in (75, 90):
        [(_, started, ended, value, _)] = alerts(env, f"{pair_host(env)} {iface}: quota {percent}%")
        assert (instant(started), value, ended) == (*crossed[percent], None)
    assert alerts(env, f"{pair_host(env)} {iface}: quota 100%") == []
    assert 100 not in crossed


def pair_host(env: dict[str, str]) -> str:
    [(name,)] = rows(env, "SELECT name FROM metrics_host")
    return name
