"""The whole path, for real: packets through a veth pair, the kernel programs, runsampler, the
database, the REST API and the WebSocket of a daphne server, with exact counts.

Traffic (sent from inside a namespace of the test's own, to the sampler's end of the pair):
50 UDP datagrams of 100 bytes to a listener, 7 DNS queries of 30 bytes answered with 50 bytes,
and TCP connection attempts to ports 80 (3) and 443 (4), refused with a RST.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair, veth_pair

ROOT = Path(__file__).resolve().parent.parent
ETH, IP, UDP = 14, 20, 8
SYN = ETH + IP + 40  # Linux's SYN: MSS, SACK permitted, timestamps, window scale
RST = ETH + IP + 20
UDP_COUNT, UDP_PAYLOAD = 50, 100
DNS_COUNT, DNS_QUERY, DNS_ANSWER = 7, 30, 50
HTTP_TRIES, HTTPS_TRIES = 3, 4

EXPECTED = {
    "rx_total_packets": UDP_COUNT + DNS_COUNT + HTTP_TRIES + HTTPS_TRIES,
    "rx_total_bytes": UDP_COUNT * (ETH + IP + UDP + UDP_PAYLOAD)
    + DNS_COUNT * (ETH + IP + UDP + DNS_QUERY)
    + (HTTP_TRIES + HTTPS_TRIES) * SYN,
    "rx_udp_packets": UDP_COUNT + DNS_COUNT,
    "rx_tcp_packets": HTTP_TRIES + HTTPS_TRIES,
    "rx_tcp_bytes": (HTTP_TRIES + HTTPS_TRIES) * SYN,
    "rx_dns_packets": DNS_COUNT,
    "rx_dns_bytes": DNS_COUNT * (ETH + IP + UDP + DNS_QUERY),
    "rx_http_packets": HTTP_TRIES,
    "rx_https_packets": HTTPS_TRIES,
    "rx_https_bytes": HTTPS_TRIES * SYN,
    "rx_ipv4_packets": UDP_COUNT + DNS_COUNT + HTTP_TRIES + HTTPS_TRIES,
    "rx_other_packets": 0,
    "rx_ipv6_packets": 0,
    "tx_total_packets": DNS_COUNT + HTTP_TRIES + HTTPS_TRIES,
    "tx_total_bytes": DNS_COUNT * (ETH + IP + UDP + DNS_ANSWER) + (HTTP_TRIES + HTTPS_TRIES) * RST,
    "tx_dns_packets": DNS_COUNT,
    "tx_http_packets": HTTP_TRIES,
    "tx_https_bytes": HTTPS_TRIES * RST,
    "tx_tcp_packets": HTTP_TRIES + HTTPS_TRIES,
    "tx_other_packets": 0,
}

EXPECTED_PACKETS = EXPECTED["rx_total_packets"] + EXPECTED["tx_total_packets"]

SENDER = textwrap.dedent(
    """
    import socket, sys
    host = sys.argv[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range({udp_count}):
        udp.sendto(b"u" * {udp_payload}, (host, 9999))
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.settimeout(5)
    for _ in range({dns_count}):
        dns.sendto(b"q" * {dns_query}, (host, 53))
        assert len(dns.recv(1500)) == {dns_answer}
    for port, tries in ((80, {http}), (443, {https})):
        for _ in range(tries):
            try:
                socket.create_connection((host, port), timeout=5)
            except ConnectionRefusedError:
                pass
            else:
                raise SystemExit("connection to port %d was not refused" % port)
    """
).format(
    udp_count=UDP_COUNT,
    udp_payload=UDP_PAYLOAD,
    dns_count=DNS_COUNT,
    dns_query=DNS_QUERY,
    dns_answer=DNS_ANSWER,
    http=HTTP_TRIES,
    https=HTTPS_TRIES,
)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Managed:
    """A manage.py subprocess with its output in a log file, for the failure message."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair() as pair:
        yield pair


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    db = tmp_path_factory.mktemp("e2e") / "netmetrics.sqlite3"
    env = {**os.environ, "NETMETRICS_DB": str(db), "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return env


def db_rows(env: dict[str, str], sql: str, *params) -> list[tuple]:
    with sqlite3.connect(env["NETMETRICS_DB"]) as db:
        return db.execute(sql, params).fetchall()


def sample_count(env: dict[str, str], iface: str) -> int:
    return db_rows(env, "SELECT COUNT(*) FROM metrics_sample WHERE interface = ?", iface)[0][0]


def start_sampler(env, pair: VethPair, log: Path, *extra: str) -> Managed:
    before = sample_count(env, pair.host_iface)
    sampler = Managed(env, log, "runsampler", "--iface", pair.host_iface, *extra)
    wait_for(
        lambda: sampler.proc.poll() is not None or sample_count(env, pair.host_iface) > before,
        60,
        "the sampler's first sample",
    )
    assert sampler.proc.poll() is None, sampler.output()
    return sampler


class Responders:
    """The sampler's side of the conversation: a UDP sink on 9999 and a DNS-ish echo on 53."""

    def __init__(self, host: str) -> None:
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind((host, 9999))
        self.dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dns.bind((host, 53))
        self.dns.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._answer, daemon=True)
        self.thread.start()

    def _answer(self) -> None:
        while self.running:
            try:
                _, peer = self.dns.recvfrom(1500)
            except TimeoutError:
                continue
            self.dns.sendto(b"a" * DNS_ANSWER, peer)

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sink.close()
        self.dns.close()


def test_exact_counts_through_kernel_sampler_api_and_websocket(pair, env, tmp_path) -> None:
    port = free_port()
    web = Managed(env, tmp_path / "web.log", "runserver", "--noreload", f"127.0.0.1:{port}")
    responders = Responders(pair.host_ip)
    sampler = None
    try:
        sampler = start_sampler(env, pair, tmp_path / "sampler.log")
        wait_for(lambda: _get(port, "/health") == "OK", 30, "the web server")
        with live_messages(port, pair.host_iface) as messages:
            before = pair.host_counters()
            subprocess.run(
                pair.in_namespace(sys.executable, "-c", SENDER, pair.host_ip),
                check=True,
                timeout=60,
            )
            after = pair.host_counters()
            # Wait for samples written after the traffic; SIGTERM then flushes the rest.
            seen = sample_count(env, pair.host_iface)
            wait_for(lambda: sample_count(env, pair.host_iface) > seen + 1, 10, "two more samples")
            wait_for(
                lambda: len(messages) >= 3 and messages[-1]["total_packets"] == EXPECTED_PACKETS,
                5,
                "the WebSocket's latest sample on connect, then two more with all the traffic",
            )
            realtime = json.loads(_get(port, f"/api/metrics/realtime?iface={pair.host_iface}"))
        assert sampler.stop() == 0, sampler.output()
    finally:
        responders.close()
        if sampler is not None:
            sampler.stop(signal.SIGKILL)
        web.stop()

    assert "native XDP" in sampler.output() and "egress on" in sampler.output()
    assert pair.attached() == "", "SIGTERM must detach everything"

    # The interface's own statistics agree with what was sent, and nothing else crossed it.
    # (veth counts a received frame's bytes after its Ethernet header is pulled; netmetrics
    # counts whole frames in both directions.)
    rx_packets = after["rx_packets"] - before["rx_packets"]
    assert rx_packets == EXPECTED["rx_total_packets"]
    assert after["rx_bytes"] - before["rx_bytes"] + ETH * rx_packets == EXPECTED["rx_total_bytes"]
    assert after["tx_packets"] - before["tx_packets"] == EXPECTED["tx_total_packets"]
    assert after["tx_bytes"] - before["tx_bytes"] == EXPECTED["tx_total_bytes"]

    # The Sample rows add up to exactly the traffic, and the run's totals equal their sum.
    columns = ", ".join(f"SUM({name})" for name in EXPECTED)
    sums = db_rows(
        env, f"SELECT {columns} FROM metrics_sample WHERE interface = ?", pair.host_iface
    )
    assert dict(zip(EXPECTED, sums[0], strict=True)) == EXPECTED
    run_totals = db_rows(
        env,
        f"SELECT {', '.join(EXPECTED)}, stopped_at FROM metrics_samplerrun WHERE interface = ?",
        pair.host_iface,
    )
    assert len(run_totals) == 1 and run_totals[0][-1] is not None
    assert dict(zip(EXPECTED, run_totals[0][:-1], strict=False)) == EXPECTED

    # The API served the same totals while the sampler ran (all traffic was in by then).
    assert realtime["totals"]["rx"]["packets"] == EXPECTED["rx_total_packets"]
    assert realtime["totals"]["rx"]["bytes"] == EXPECTED["rx_total_bytes"]
    assert realtime["totals"]["rx"]["dns_packets"] == EXPECTED["rx_dns_packets"]
    assert realtime["totals"]["tx"]["bytes"] == EXPECTED["tx_total_bytes"]
    assert realtime["totals"]["tx"]["https_bytes"] == EXPECTED["tx_https_bytes"]
    assert realtime["total_packets"] == EXPECTED_PACKETS
    assert realtime["sampler_running"] is True

    # The WebSocket pushed samples as they were written, each with the run's totals then.
    assert len(messages) >= 3, messages
    assert {m["type"] for m in messages} == {"sample"}
    assert {m["interface"] for m in messages} == {pair.host_iface}
    rx_totals = [m["totals"]["rx"]["packets"] for m in messages]
    assert rx_totals == sorted(rx_totals) and rx_totals[-1] == EXPECTED["rx_total_packets"]
    timestamps = [m["timestamp"] for m in messages]
    assert len(set(timestamps)) == len(timestamps), "each sample once"


def test_sigkill_leaves_a_program_that_the_next_start_replaces(pair, env, tmp_path) -> None:
    killed = start_sampler(env, pair, tmp_path / "killed.log", "--mode", "skb")
    killed.stop(signal.SIGKILL)
    assert pair.xdp(), "a SIGKILLed sampler cannot detach: its program lingers"

    restarted = start_sampler(env, pair, tmp_path / "restarted.log")
    try:
        assert "XDP" in restarted.output()
    finally:
        assert restarted.stop() == 0, restarted.output()
    assert pair.attached() == ""


def test_no_egress_attaches_no_tc_filter(pair, env, tmp_path) -> None:
    sampler = start_sampler(env, pair, tmp_path / "ingress.log", "--no-egress")
    try:
        assert pair.xdp() and pair.egress_filters() == ""
        assert "egress off" in sampler.output()
    finally:
        assert sampler.stop() == 0
    assert pair.attached() == ""


def one_error_line(*command: str, env: dict[str, str]) -> str:
    """Run a command that must fail with exactly one line on stderr and no traceback."""
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_unknown_interface_is_one_clear_line(env) -> None:
    line = one_error_line(sys.executable, "manage.py", "runsampler", "--iface", "nosuch0", env=env)
    assert "nosuch0" in line


def test_without_root_is_one_clear_line(pair, env) -> None:
    unprivileged = {**env, "NETMETRICS_SECRET_KEY": "test", "HOME": "/tmp"}
    line = one_error_line(
        "runuser",
        "-u",
        "nobody",
        "--",
        sys.executable,
        "-B",
        "manage.py",
        "runsampler",
        "--iface",
        pair.host_iface,
        env=unprivileged,
    )
    assert "root" in line and "sudo" in line
    assert pair.attached() == ""


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


@contextlib.contextmanager
def live_messages(port: int, iface: str) -> Iterator[list[dict]]:
    """A real WebSocket client, reading on its own thread; the list fills until the block ends."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    messages: list[dict] = []

    def read(ws) -> None:
        try:
            while True:
                messages.append(json.loads(ws.recv()))
        except ConnectionClosed:
            return

    url = f"ws://127.0.0.1:{port}/ws/metrics/?iface={iface}"
    with connect(url, origin="http://127.0.0.1", open_timeout=10) as ws:
        reader = threading.Thread(target=read, args=(ws,), daemon=True)
        reader.start()
        yield messages
    reader.join(5)
