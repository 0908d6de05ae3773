"""Flows end to end: known conversations from a namespace, counted per flow by the kernel, kept
by the sampler (live and per minute) and served by the API, exactly, over IPv4 and IPv6."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.netns import VethPair, veth_pair
from tests.processes import WebServer, db_rows, migrated_env, wait_for
from tests.test_end_to_end import one_error_line, run_id, start_sampler

PORT = 9999
ETH, IPV4, IPV6, UDP = 14, 20, 40, 8
REPLY = 20  # bytes of payload the host answers to conversations A and C
# The namespace's side: (tag, family, source port, datagrams, payload bytes, answered).
CONVERSATIONS = [
    ("A", "v4", 41000, 30, 100, True),
    ("B", "v4", 41001, 10, 1000, False),
    ("C", "v6", 41002, 20, 200, True),
]
SENDER = """
import json, socket, sys
host4, host6, port, reply = sys.argv[1], sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
for tag, family, sport, count, size, answered in json.loads(sys.argv[3]):
    af, host = (socket.AF_INET, host4) if family == "v4" else (socket.AF_INET6, host6)
    s = socket.socket(af, socket.SOCK_DGRAM)
    s.bind(("", sport))
    s.settimeout(5)
    for _ in range(count):
        s.sendto(tag.encode() * size, (host, port))
        if answered:
            assert len(s.recv(100)) == reply
"""


def expected(pair: VethPair) -> dict[tuple, dict[str, int]]:
    """Each flow as the host sees it: its key (local is the host) and its counts."""
    flows = {}
    for _tag, family, sport, count, size, answered in CONVERSATIONS:
        ip = IPV4 if family == "v4" else IPV6
        local, remote = (
            (pair.host_ip, pair.peer_ip) if family == "v4" else (pair.host_ip6, pair.peer_ip6)
        )
        replies = count if answered else 0
        flows[(17, local, PORT, remote, sport)] = {
            "rx_packets": count,
            "rx_bytes": count * (ETH + ip + UDP + size),
            "tx_packets": replies,
            "tx_bytes": replies * (ETH + ip + UDP + REPLY),
        }
    return flows


def key(flow: dict) -> tuple:
    number = flow.get("protocol_number", flow["protocol"])
    return (number, flow["local"], flow["local_port"], flow["remote"], flow["remote_port"])


COUNTS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")


class Answerer:
    """The host's side: answers conversations A and C with REPLY bytes, on IPv4 and IPv6."""

    def __init__(self, pair: VethPair) -> None:
        self.sockets = []
        for family, host in ((socket.AF_INET, pair.host_ip), (socket.AF_INET6, pair.host_ip6)):
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind((host, PORT))
            s.settimeout(0.2)
            self.sockets.append(s)
        self.running = True
        self.threads = [threading.Thread(target=self._answer, args=(s,)) for s in self.sockets]
        for thread in self.threads:
            thread.start()

    def _answer(self, s: socket.socket) -> None:
        while self.running:
            try:
                data, peer = s.recvfrom(2000)
            except TimeoutError:
                continue
            if data[:1] in (b"A", b"C"):
                s.sendto(b"r" * REPLY, peer)

    def close(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join()
        for s in self.sockets:
            s.close()


@pytest.fixture(scope="module")
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair(ipv6=True) as pair:
        yield pair


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A database of each test's own: flow minutes of one interface do not say which run."""
    return migrated_env(tmp_path / "netmetrics.sqlite3")


def live_flows(env: dict[str, str], run: int) -> dict[tuple, dict]:
    rows = db_rows(env, "SELECT flows FROM metrics_liveflows WHERE run_id = ?", run)
    if not rows:
        return {}
    flows = rows[0][0]  # JSON text from SQLite, already a list from PostgreSQL's jsonb
    return {key(flow): flow for flow in (json.loads(flows) if isinstance(flows, str) else flows)}


@pytest.mark.parametrize("mode", ["native", "skb"])
def test_exact_flows_live_per_minute_and_through_the_api(pair, env, tmp_path, mode) -> None:
    flows = expected(pair)
    web = WebServer(env, tmp_path / "web.log")
    answerer = Answerer(pair)
    sampler = None
    try:
        sampler = start_sampler(env, pair, tmp_path / "sampler.log", "--mode", mode)
        run = run_id(env, sampler)
        subprocess.run(
            pair.in_namespace(
                sys.executable,
                "-c",
                SENDER,
                pair.host_ip,
                pair.host_ip6,
                json.dumps(CONVERSATIONS),
                str(PORT),
                str(REPLY),
            ),
            check=True,
            timeout=60,
        )

        def live_is_complete() -> bool:
            live = live_flows(env, run)
            return all(
                {c: live.get(k, {}).get(c) for c in COUNTS} == want for k, want in flows.items()
            )

        wait_for(live_is_complete, 10, "the live flows to hold all the traffic")
        web.wait_healthy()
        live = json.loads(web.get(f"/api/flows/live?iface={pair.host_iface}"))
        assert sampler.stop() == 0, sampler.output()  # SIGTERM writes the minute under way

        minutes = db_rows(
            env,
            f"SELECT protocol, local, local_port, remote, remote_port, {', '.join(COUNTS)} "
            "FROM metrics_flowminute WHERE interface = ?",
            pair.host_iface,
        )
        stored: dict[tuple, list[int]] = {}
        for *flow_key, rx_p, rx_b, tx_p, tx_b in minutes:
            totals = stored.setdefault(tuple(flow_key), [0, 0, 0, 0])
            for i, count in enumerate((rx_p, rx_b, tx_p, tx_b)):
                totals[i] += count
        top = {
            by: json.loads(
                web.get(f"/api/flows/top?iface={pair.host_iface}&window=1h&by={by}&limit=3")
            )
            for by in ("bytes", "packets")
        }
    finally:
        answerer.close()
        if sampler is not None:
            sampler.stop(signal.SIGKILL)
        web.stop()

    for flow, want in flows.items():
        assert dict(zip(COUNTS, stored[flow], strict=True)) == want, flow
    served = {key(flow): {c: flow[c] for c in COUNTS} for flow in live["flows"]}
    assert {k: served[k] for k in flows} == flows
    assert live["dropped"] == 0 and live["flow_table"] > 0

    # B has the most bytes, then C, then A; by packets A (60) leads C (40) and B (10).
    flow_a, flow_b, flow_c = flows
    assert [key(flow) for flow in top["bytes"]["flows"]] == [flow_b, flow_c, flow_a]
    assert [key(flow) for flow in top["packets"]["flows"]] == [flow_a, flow_c, flow_b]
    for flow in top["bytes"]["flows"]:
        assert {c: flow[c] for c in COUNTS} == flows[key(flow)]
    assert top["bytes"]["flows_dropped"] == 0


def test_no_flows_and_no_tcp_health_attach_neither(pair, env, tmp_path) -> None:
    sampler = start_sampler(
        env, pair, tmp_path / "sampler.log", "--no-flows", "--no-tcp-health", "--flow-table", "1"
    )
    try:
        run = run_id(env, sampler)
        seen = db_rows(env, "SELECT last_sample_id FROM metrics_samplerrun WHERE id = ?", run)
        wait_for(
            lambda: (
                db_rows(env, "SELECT last_sample_id FROM metrics_samplerrun WHERE id = ?", run)
                != seen
            ),
            10,
            "a second sample",
        )
    finally:
        assert sampler.stop() == 0, sampler.output()
    assert "TCP health off" in sampler.output() and "flows off" in sampler.output()
    assert db_rows(env, "SELECT flow_table FROM metrics_samplerrun WHERE id = ?", run) == [(0,)]
    assert db_rows(env, "SELECT COUNT(*) FROM metrics_liveflows WHERE run_id = ?", run) == [(0,)]


@pytest.mark.parametrize("size", ["0", "15", "2000000"])
def test_a_bad_flow_table_size_is_one_clear_line(requires_bpf, env, size) -> None:
    command = ("manage.py", "runsampler", "--iface", "lo", "--flow-table", size)
    line = one_error_line(sys.executable, *command, env=env)
    assert "--flow-table must be between 16 and 1048576 entries" in line
