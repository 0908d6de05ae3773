"""The whole path, for real: packets through a veth pair, the kernel programs, runsampler, the
database, the REST API and the WebSocket of a daphne server, with exact counts, in both modes:
ingress by native XDP, and by the TC ingress filter (skb mode).

Traffic (sent from inside a namespace of the test's own, to the sampler's end of the pair):
50 UDP datagrams of 100 bytes to a listener, 7 DNS queries of 30 bytes answered with 50 bytes,
and TCP connection attempts to ports 80 (3) and 443 (4), refused with a RST. A TCP bulk transfer
checks that GSO aggregates (which veth hands over whole) count as the wire packets they stand for.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpf import libbpf
from bpf.classes import DEFAULT_APP_PORTS
from bpf.program import Program
from tests.netns import VethPair, sh, veth_pair
from tests.processes import (
    ROOT,
    Managed,
    WebServer,
    db_rows,
    live_messages,
    migrated_env,
    unmigrated_env,
    wait_for,
)

ETH, IP, UDP = 14, 20, 8
SYN = ETH + IP + 40  # Linux's SYN (and SYN-ACK): MSS, SACK permitted, timestamps, window scale
RST = ETH + IP + 20
TCP_TS = ETH + IP + 32  # any other segment of a connection with timestamps: NOP, NOP, timestamp
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
    # Every connection attempt: a SYN in, refused by a RST (with ACK) out; nothing else.
    "rx_syn_packets": HTTP_TRIES + HTTPS_TRIES,
    "rx_syn_bytes": (HTTP_TRIES + HTTPS_TRIES) * SYN,
    "tx_rst_packets": HTTP_TRIES + HTTPS_TRIES,
    "tx_rst_bytes": (HTTP_TRIES + HTTPS_TRIES) * RST,
    "tx_synack_packets": 0,
    "rx_rst_packets": 0,
    "rx_fin_packets": 0,
    "tx_fin_packets": 0,
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


@pytest.fixture(scope="module")
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair() as pair:
        yield pair


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return migrated_env(tmp_path_factory.mktemp("e2e") / "netmetrics.sqlite3")


def sample_count(env: dict[str, str], iface: str) -> int:
    return db_rows(env, "SELECT COUNT(*) FROM metrics_sample WHERE interface = ?", iface)[0][0]


def run_id(env: dict[str, str], sampler: Managed) -> int:
    """The SamplerRun of this sampler process (samples of earlier runs share the interface)."""
    rows = db_rows(env, "SELECT MAX(id) FROM metrics_samplerrun WHERE pid = ?", sampler.pid)
    return rows[0][0]


def clsact(pair: VethPair) -> bool:
    return "clsact" in sh("tc", "qdisc", "show", "dev", pair.host_iface)


def start_sampler(env, pair: VethPair, log: Path, *extra: str) -> Managed:
    """runsampler on the host end, once its first sample is written."""
    before = sample_count(env, pair.host_iface)
    sampler = Managed(env, log, "runsampler", "--iface", pair.host_iface, *extra)
    wait_for(
        lambda: not sampler.running() or sample_count(env, pair.host_iface) > before,
        60,
        "the sampler's first sample",
    )
    assert sampler.running(), sampler.output()
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


@pytest.mark.parametrize("mode", ["native", "skb"])
def test_exact_counts_through_kernel_sampler_api_and_websocket(pair, env, tmp_path, mode) -> None:
    web = WebServer(env, tmp_path / "web.log")
    responders = Responders(pair.host_ip)
    sampler = None
    try:
        sampler = start_sampler(env, pair, tmp_path / "sampler.log", "--mode", mode)
        web.wait_healthy()
        with live_messages(web.port, pair.host_iface) as messages:
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
            realtime = json.loads(web.get(f"/api/metrics/realtime?iface={pair.host_iface}"))
        assert sampler.stop() == 0, sampler.output()
    finally:
        responders.close()
        if sampler is not None:
            sampler.stop(signal.SIGKILL)
        web.stop()

    ingress = "native XDP" if mode == "native" else "TC (skb mode)"
    assert f"ingress by {ingress}, egress by TC" in sampler.output()
    assert pair.attached() == "" and not clsact(pair), "SIGTERM must detach everything"

    # The interface's own statistics agree with what was sent, and nothing else crossed it.
    # (veth on its XDP path counts a received frame's bytes after its Ethernet header is pulled;
    # netmetrics counts whole frames in both directions.)
    rx_packets = after["rx_packets"] - before["rx_packets"]
    assert rx_packets == EXPECTED["rx_total_packets"]
    pulled = ETH * rx_packets if mode == "native" else 0
    assert after["rx_bytes"] - before["rx_bytes"] + pulled == EXPECTED["rx_total_bytes"]
    assert after["tx_packets"] - before["tx_packets"] == EXPECTED["tx_total_packets"]
    assert after["tx_bytes"] - before["tx_bytes"] == EXPECTED["tx_total_bytes"]

    # The run's Sample rows add up to exactly the traffic, and the run's totals equal their sum.
    run = run_id(env, sampler)
    columns = ", ".join(f"SUM({name})" for name in EXPECTED)
    sums = db_rows(env, f"SELECT {columns} FROM metrics_sample WHERE run_id = ?", run)
    assert dict(zip(EXPECTED, sums[0], strict=True)) == EXPECTED
    [(*totals, run_mode, stopped_at)] = db_rows(
        env,
        f"SELECT {', '.join(EXPECTED)}, mode, stopped_at FROM metrics_samplerrun WHERE id = ?",
        run,
    )
    assert run_mode == mode and stopped_at is not None
    assert dict(zip(EXPECTED, totals, strict=True)) == EXPECTED

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


BULK_PORT, BULK_BYTES = 5001, 3_000_000 + 123
# The sender prints its own TCP_INFO counts once the connection is closed both ways: tcpi_segs_out
# (every segment it sent, the SYN and retransmissions included, a GSO packet as its segments) at
# offset 136, and tcpi_bytes_sent (payload bytes, retransmissions included) at 200. Veth can
# reorder (its receive backlog is per CPU) and the sender then retransmits: those frames cross the
# link too, so only the sender knows the exact count. Its small send buffer keeps fewer frames in
# flight than veth's XDP ring holds (256), which would otherwise drop some before any hook.
BULK_SENDER = """
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
s.settimeout(10)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"b" * int(sys.argv[3]))
s.shutdown(socket.SHUT_WR)
assert s.recv(1) == b""  # the receiver read everything and closed
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
print(*struct.unpack_from("I", info, 136), *struct.unpack_from("Q", info, 200),
      *struct.unpack_from("I", info, 100))
"""


def bulk_transfer(pair: VethPair) -> tuple[int, int, int, int]:
    """BULK_BYTES over one TCP connection from the namespace to the host end.

    Returns the bytes received, and the sender's segments, payload bytes and segments
    retransmitted (tcpi_total_retrans, offset 100).
    """
    received = 0

    def receive(listener: socket.socket) -> None:
        nonlocal received
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(1 << 16):
                received += len(chunk)

    with socket.create_server((pair.host_ip, BULK_PORT)) as listener:
        listener.settimeout(30)
        receiver = threading.Thread(target=receive, args=(listener,))
        receiver.start()
        sender = subprocess.run(
            pair.in_namespace(
                sys.executable, "-c", BULK_SENDER, pair.host_ip, str(BULK_PORT), str(BULK_BYTES)
            ),
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        receiver.join(30)
    segs_out, bytes_sent, retransmitted = map(int, sender.stdout.split())
    return received, segs_out, bytes_sent, retransmitted


@pytest.mark.parametrize("mode", ["native", "skb"])
def test_gso_aggregates_count_as_their_wire_packets(pair, env, tmp_path, mode) -> None:
    """A TCP bulk transfer: veth hands the sender's GSO packets over whole (in skb mode), yet
    every packet counts as the wire frames it stands for, each with its own headers."""
    sampler = start_sampler(env, pair, tmp_path / "bulk.log", "--mode", mode)
    try:
        before = pair.host_counters()
        received, segs_out, bytes_sent, retransmitted = bulk_transfer(pair)
    finally:
        assert sampler.stop() == 0, sampler.output()
    after = pair.host_counters()
    assert received == BULK_BYTES <= bytes_sent

    names = (
        "rx_total_packets",
        "rx_tcp_packets",
        "rx_tcp_bytes",
        "rx_syn_packets",
        "tx_synack_packets",
        "rx_fin_packets",
        "tx_fin_packets",
        "rx_rst_packets",
        "tx_rst_packets",
        "tcp_retransmits",
    )
    row = db_rows(
        env, f"SELECT {', '.join(names)} FROM metrics_samplerrun WHERE id = ?", run_id(env, sampler)
    )
    counted = dict(zip(names, row[0], strict=True))
    packets = counted["rx_tcp_packets"]
    assert packets == counted["rx_total_packets"], "nothing but the transfer crossed the link"
    # Exactly the segments the sender sent; every one but the SYN with the same headers.
    assert packets == segs_out, (counted, segs_out, bytes_sent)
    assert counted["rx_tcp_bytes"] == bytes_sent + packets * TCP_TS + SYN - TCP_TS, counted
    # One connection: opened by one SYN and SYN-ACK, closed by a FIN each way (the sender's may
    # ride on its last data, inside an aggregate, and still counts once; a retransmitted FIN
    # would count again, so only the receiver's is exact), never reset.
    assert (counted["rx_syn_packets"], counted["tx_synack_packets"]) == (1, 1), counted
    assert counted["rx_fin_packets"] >= 1 and counted["tx_fin_packets"] == 1, counted
    assert counted["rx_rst_packets"] == counted["tx_rst_packets"] == 0, counted
    # TCP health: the host end's own connection (the receiver) retransmits nothing; the
    # sender is in the namespace, whose address is not the interface's. (Its RTT is sampled
    # only if a tick finds it open: tests/test_tcp_health.py checks RTT.)
    assert counted["tcp_retransmits"] == 0, (counted, retransmitted)
    # veth counts what it hands over: single frames under native XDP (which turns the sender's
    # GSO off), aggregates otherwise; so the skb mode really had aggregates to count.
    handed_over = after["rx_packets"] - before["rx_packets"]
    if mode == "native":
        assert handed_over == packets
    else:
        assert handed_over < packets / 2, (handed_over, packets)


@pytest.mark.parametrize(("killed_mode", "next_mode"), [("native", "auto"), ("skb", "native")])
def test_sigkill_leaves_programs_that_a_start_in_another_mode_replaces(
    pair, env, tmp_path, killed_mode, next_mode
) -> None:
    """A killed sampler's hooks keep counting (tests/test_restarts.py continues them); a start
    that wants the other ingress hook replaces it, keeps the egress filter, and counts afresh."""
    killed = start_sampler(env, pair, tmp_path / "killed.log", "--mode", killed_mode)
    killed.stop(signal.SIGKILL)
    # A SIGKILLed sampler cannot detach: its programs linger, the clsact qdisc too.
    ingress_by_xdp = killed_mode == "native"
    assert bool(pair.xdp()) == ingress_by_xdp, pair.attached()
    assert ("netmetrics_tcin" in pair.attached()) != ingress_by_xdp, pair.attached()
    egress = pair.filters("egress")
    assert "netmetrics_tc " in egress, pair.attached()

    restarted = start_sampler(env, pair, tmp_path / "restarted.log", "--mode", next_mode)
    try:
        output = restarted.output()
        assert "its hooks changed since the last sampler: counting afresh" in output, output
        assert pair.filters("egress") == egress  # the same program, never detached
        if ingress_by_xdp:  # auto on veth counts ingress with TC: the XDP leftover goes
            assert "removing a netmetrics XDP program" in output, output
            assert "auto: veth loses GSO under native XDP" in output, output
            assert not pair.xdp() and "netmetrics_tcin" in pair.attached()
        else:
            assert "removing a netmetrics ingress filter" in output, output
            assert pair.xdp() and "netmetrics_tcin" not in pair.attached()
    finally:
        assert restarted.stop() == 0, restarted.output()
    assert pair.attached() == "" and not clsact(pair)


def leave_generic_xdp(pair: VethPair, prog_fd: int) -> None:
    """Attach a program in generic mode and leave it there, as a leftover or another tool would."""
    ifindex = socket.if_nametoindex(pair.host_iface)
    rc = libbpf.lib().bpf_xdp_attach(ifindex, prog_fd, libbpf.XDP_FLAGS_SKB_MODE, None)
    libbpf.check(rc, "attach generic XDP")
    assert "xdpgeneric" in pair.xdp()


def test_an_old_samplers_generic_xdp_leftover_is_removed(pair, env, tmp_path) -> None:
    program = Program(DEFAULT_APP_PORTS)
    try:
        leave_generic_xdp(pair, program.xdp_fd)
    finally:
        program.close()  # the interface keeps the attached program loaded
    sampler = start_sampler(env, pair, tmp_path / "generic.log", "--mode", "skb")
    try:
        assert "removing a netmetrics XDP program" in sampler.output(), sampler.output()
        assert not pair.xdp()
    finally:
        assert sampler.stop() == 0, sampler.output()
    assert pair.attached() == "" and not clsact(pair)


def test_another_tools_xdp_program_stops_native_mode_only(pair, env, tmp_path) -> None:
    from bcc import BPF

    other = BPF(text=b"int other_xdp(struct xdp_md *ctx) { return XDP_PASS; }")
    try:
        leave_generic_xdp(pair, other.load_func(b"other_xdp", BPF.XDP).fd)
        argv = (sys.executable, "manage.py", "runsampler", "--iface", pair.host_iface)
        line = one_error_line(*argv, "--mode", "native", env=env)
        assert "another XDP program (other_xdp" in line and "xdpgeneric off" in line, line
        assert pair.attached() == pair.xdp()

        # auto (as skb) counts ingress with TC, after the other program, and leaves it alone.
        sampler = start_sampler(env, pair, tmp_path / "auto.log")
        try:
            assert "auto: another XDP program (other_xdp" in sampler.output(), sampler.output()
            assert "netmetrics_tcin" in pair.attached()
        finally:
            assert sampler.stop() == 0, sampler.output()
        assert "other_xdp" in pair.xdp() and pair.attached() == pair.xdp()
    finally:
        sh("ip", "link", "set", "dev", pair.host_iface, "xdpgeneric", "off", check=False)
        other.cleanup()
    assert pair.attached() == "" and not clsact(pair)


def test_no_egress_attaches_no_tc_filter(pair, env, tmp_path) -> None:
    sampler = start_sampler(env, pair, tmp_path / "ingress.log", "--no-egress")
    try:
        assert pair.filters("egress") == "" and "netmetrics_tcin" in pair.attached()
        assert "egress off" in sampler.output()
    finally:
        assert sampler.stop() == 0
    assert pair.attached() == "" and not clsact(pair)


def one_error_line(*command: str, env: dict[str, str]) -> str:
    """Run a command that must fail with exactly one line on stderr and no traceback."""
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_unknown_interface_is_one_clear_line(requires_bpf, env) -> None:
    line = one_error_line(sys.executable, "manage.py", "runsampler", "--iface", "nosuch0", env=env)
    assert "nosuch0" in line


def test_unusable_database_is_one_clear_line_and_detaches(pair, tmp_path) -> None:
    """An empty database (file) where the database should be: no tables, so the first write
    fails."""
    env = {**unmigrated_env(tmp_path / "empty.sqlite3"), "NETMETRICS_SECRET_KEY": "test"}
    line = one_error_line(
        sys.executable, "manage.py", "runsampler", "--iface", pair.host_iface, env=env
    )
    assert "cannot write the database" in line and "make setup" in line
    assert pair.attached() == ""


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
