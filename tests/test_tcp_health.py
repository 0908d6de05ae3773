"""TCP health on the real kernel: connections from the host end of a veth pair into a namespace
of the test's own count, loopback connections do not, and a retransmission provoked by dropping
data segments counts exactly as the sender's own TCP_INFO says.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import signal
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from bpf import libbpf
from bpf.build import Build
from bpf.classes import DEFAULT_APP_PORTS, HEALTH_NAMES, RTT_NAMES
from bpf.pins import Objects
from bpf.tcp_health import TcpHealth
from tests.netns import VethPair, sh, veth_pair
from tests.processes import ROOT, wait_for

ROUND_TRIPS = 20
PORT = 5201
# struct tcp_info (linux/tcp.h): eight u8 fields, then u32s; tcpi_total_retrans is the 24th u32.
TCPI_TOTAL_RETRANS = 100
# A veth round trip takes tens of microseconds; 2^15 us (33 ms) is far beyond any of them.
PLAUSIBLE_BUCKETS = range(0, 15)

# In the namespace: accept one connection at a time; answer each read with one byte.
ECHO_SERVER = textwrap.dedent(
    """
    import contextlib, socket, sys
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn, contextlib.suppress(OSError):  # a client may close with answers unread
            while conn.recv(65536):
                conn.send(b"k")
    """
)

# At TC egress of the host end: drop the first DROPS TCP packets with payload to PORT (a GSO
# packet of many segments is one packet here).
DROPPER = b"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>

BPF_ARRAY(dropped, u32, 1);

int drop_data(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    if ((void *)(ip + 1) > end || eth->h_proto != htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP)
        return TC_ACT_OK;
    struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
    if ((void *)(tcp + 1) > end || tcp->dest != htons(PORT))
        return TC_ACT_OK;
    if (ntohs(ip->tot_len) <= ip->ihl * 4 + tcp->doff * 4)
        return TC_ACT_OK;
    int zero = 0;
    u32 *count = dropped.lookup(&zero);
    if (!count || *count >= DROPS)
        return TC_ACT_OK;
    __sync_fetch_and_add(count, 1);
    return TC_ACT_STOLEN;  /* gone, but "sent" to TCP: TC_ACT_SHOT would report a local drop,
                              which TCP sends again as new data, not as a retransmission */
}
"""
DROPPER_HANDLE, DROPPER_PRIORITY = 0x7E57, 7  # not netmetrics' own place (0x4e4d, 1)


@pytest.fixture(scope="module")
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair() as pair:
        server = subprocess.Popen(
            pair.in_namespace(sys.executable, "-c", ECHO_SERVER, pair.peer_ip, str(PORT)),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            yield pair
        finally:
            server.kill()
            server.wait()


class Watching(NamedTuple):
    """TcpHealth watching one interface: read() is that interface's counts."""

    health: TcpHealth
    ifindex: int

    def read(self) -> dict[str, int]:
        return self.health.read()[self.ifindex]


@contextlib.contextmanager
def loaded_health() -> Iterator[TcpHealth]:
    """TcpHealth over a private set (bpf/pins.py): attached until the block ends."""
    objects = Objects.private(Build.of(DEFAULT_APP_PORTS, 0, tcp_health=True))
    try:
        yield TcpHealth(objects)
    finally:
        objects.close()


@pytest.fixture
def health(pair: VethPair) -> Iterator[Watching]:
    ifindex = socket.if_nametoindex(pair.host_iface)
    with loaded_health() as health:
        health.watch(pair.host_iface, ifindex)
        yield Watching(health, ifindex)


def rtt_counts(health: Watching) -> list[int]:
    counts = health.read()
    return [counts[name] for name in RTT_NAMES]


def converse(
    address: tuple[str, int], family: int = socket.AF_INET, source: str | None = None
) -> socket.socket:
    """ROUND_TRIPS request/answer exchanges on a new connection; returns it still open."""
    conn = socket.socket(family, socket.SOCK_STREAM)
    conn.settimeout(10)
    if source is not None:
        conn.bind((source, 0))
    conn.connect(address)
    for _ in range(ROUND_TRIPS):
        conn.sendall(b"x" * 100)
        assert conn.recv(1) == b"k"
    return conn


def total_retrans(conn: socket.socket) -> int:
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCPI_TOTAL_RETRANS + 4)
    return struct.unpack_from("I", info, TCPI_TOTAL_RETRANS)[0]


def test_loopback_connections_do_not_count(health) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        before = rtt_counts(health)
        client = socket.create_connection(server.getsockname(), timeout=10)
        peer, _ = server.accept()
        with client, peer:
            for _ in range(ROUND_TRIPS):
                client.sendall(b"x" * 100)
                assert peer.recv(100)
                peer.sendall(b"k")
                assert client.recv(1) == b"k"
        assert rtt_counts(health) == before


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "v4-mapped"])
def test_rtt_of_the_interfaces_connections_lands_in_plausible_buckets(pair, health, family):
    before = rtt_counts(health)
    host = pair.peer_ip if family == socket.AF_INET else f"::ffff:{pair.peer_ip}"
    with converse((host, PORT), family):
        added = [b - a for a, b in zip(before, rtt_counts(health), strict=True)]
        assert sum(rtt_counts(health)) == sum(before) + 1, "nothing received since: no count"
    assert sum(added) == 1, added  # one connection, active since the last read: counted once
    assert all(added[k] == 0 for k in range(len(added)) if k not in PLAUSIBLE_BUCKETS), added


def test_connections_are_listed_only_when_tcp_was_received(health, monkeypatch) -> None:
    """The sampler passes its interfaces' rx_tcp_packets: unmoved, no watched connection
    received anything, and the ~2 ms walk of the kernel's TCP tables is skipped."""
    listings: list[int] = []

    def tcp_connections() -> list:
        listings.append(1)
        return []

    monkeypatch.setattr("bpf.tcp_health.tcp_connections", tcp_connections)
    for received in (5, 5, 5, 6, 6, 9):
        health.health.read(received)
    assert len(listings) == 3


def test_an_address_added_later_counts_after_the_refresh(pair, health, monkeypatch) -> None:
    extra = pair.host_ip.rsplit(".", 1)[0] + ".5"  # outside the pair's /30
    sh("ip", "addr", "add", f"{extra}/32", "dev", pair.host_iface)
    sh(*pair.in_namespace("ip", "route", "add", f"{extra}/32", "dev", pair.peer_iface))
    try:
        before = sum(rtt_counts(health))
        with converse((pair.peer_ip, PORT), source=extra):
            assert sum(rtt_counts(health)) == before  # not refreshed yet: not the interface's
        monkeypatch.setattr("bpf.tcp_health.ADDRESS_REFRESH_SECONDS", 0)
        health.read()
        with converse((pair.peer_ip, PORT), source=extra):
            assert sum(rtt_counts(health)) == before + 1
    finally:
        sh("ip", "addr", "del", f"{extra}/32", "dev", pair.host_iface, check=False)


class Dropper:
    """DROPPER at TC egress of the host end, by libbpf like the sampler's own filters."""

    def __init__(self, ifindex: int, drops: int) -> None:
        from bcc import BPF

        self.bpf = BPF(text=DROPPER, cflags=[f"-DPORT={PORT}", f"-DDROPS={drops}"])
        fd = self.bpf.load_func(b"drop_data", BPF.SCHED_CLS).fd
        self.hook = libbpf.TcHook(ifindex=ifindex, attach_point=libbpf.BPF_TC_EGRESS)
        rc = libbpf.lib().bpf_tc_hook_create(ctypes.byref(self.hook))
        assert rc in (0, -errno.EEXIST), rc
        self.opts = libbpf.TcOpts(prog_fd=fd, handle=DROPPER_HANDLE, priority=DROPPER_PRIORITY)
        libbpf.check(
            libbpf.lib().bpf_tc_attach(ctypes.byref(self.hook), ctypes.byref(self.opts)), "attach"
        )

    def dropped(self) -> int:
        return self.bpf[b"dropped"][ctypes.c_int(0)].value

    def close(self) -> None:
        opts = libbpf.TcOpts(handle=DROPPER_HANDLE, priority=DROPPER_PRIORITY)
        libbpf.lib().bpf_tc_detach(ctypes.byref(self.hook), ctypes.byref(opts))
        self.bpf.cleanup()


@pytest.mark.parametrize(
    ("size", "drops"),
    # One small segment lost twice (a tail loss probe, then a timeout, retransmit it); a bulk
    # transfer losing GSO packets, whose retransmissions carry several segments at a time.
    [(100, 2), (1_000_000, 3)],
    ids=["one-segment", "bulk"],
)
def test_retransmits_count_exactly_as_the_sender_counts_them(pair, health, size, drops) -> None:
    dropper = Dropper(socket.if_nametoindex(pair.host_iface), drops)
    try:
        before = health.read()["tcp_retransmits"]
        with socket.create_connection((pair.peer_ip, PORT), timeout=10) as conn:
            conn.sendall(b"x" * size)
            assert conn.recv(1) == b"k"
            retransmitted = total_retrans(conn)
            counted = health.read()["tcp_retransmits"] - before
        assert dropper.dropped() == drops
    finally:
        dropper.close()
    assert retransmitted >= drops
    assert counted == retransmitted


def test_read_keys_and_watch_cycles(pair) -> None:
    ifindex = socket.if_nametoindex(pair.host_iface)
    with loaded_health() as health:
        assert health.read() == {}
        for _ in range(2):
            health.watch(pair.host_iface, ifindex)
            assert tuple(health.read()[ifindex]) == HEALTH_NAMES
            with converse((pair.peer_ip, PORT)):
                # zeroed by watch, then this connection
                assert sum(rtt_counts(Watching(health, ifindex))) == 1
            health.unwatch(ifindex)
            health.unwatch(ifindex)
            assert health.read() == {}
            with converse((pair.peer_ip, PORT)):
                assert health.read() == {}  # unwatched: nothing counts any more


def test_each_interface_counts_its_own_connections(pair) -> None:
    """Two watched interfaces: a connection over one counts for it alone."""
    with veth_pair(index=1) as other, loaded_health() as health:
        server = subprocess.Popen(
            other.in_namespace(sys.executable, "-c", ECHO_SERVER, other.peer_ip, str(PORT)),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            ifindexes = {p.host_iface: socket.if_nametoindex(p.host_iface) for p in (pair, other)}
            for name, ifindex in ifindexes.items():
                health.watch(name, ifindex)
            for used in (pair, other, other):
                with converse((used.peer_ip, PORT)):
                    health.read()
            rtt = {
                name: sum(rtt_counts(Watching(health, ifindex)))
                for name, ifindex in ifindexes.items()
            }
            assert rtt == {pair.host_iface: 1, other.host_iface: 2}
        finally:
            server.kill()
            server.wait()


# Loads a private set, prints the id of the program its tracepoint link holds, waits to be killed.
CHILD = textwrap.dedent(
    """
    import ctypes, socket, sys, time
    from bpf import libbpf
    from bpf.build import Build
    from bpf.classes import DEFAULT_APP_PORTS
    from bpf.pins import Objects
    from bpf.tcp_health import TcpHealth
    objects = Objects.private(Build.of(DEFAULT_APP_PORTS, 0, tcp_health=True))
    TcpHealth(objects).watch(sys.argv[1], socket.if_nametoindex(sys.argv[1]))
    info = (ctypes.c_uint32 * 16)()  # struct bpf_link_info: type, id, prog_id, ...
    size = ctypes.c_uint32(ctypes.sizeof(info))
    fd = objects.fd("retransmit_link")
    libbpf.check(libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)), "info")
    print(info[2], flush=True)
    time.sleep(60)
    """
)


def test_sigkill_leaves_no_tracepoint_attached(pair) -> None:
    """A private set's tracepoint link is a file descriptor of the process, closed by the
    kernel when it dies; it holds its program, so the program unloading proves that no
    attachment outlived a SIGKILLed process. (A kept set's link is pinned: it outlives the
    sampler on purpose, see tests/test_restarts.py.)"""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, pair.host_iface], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        prog_ids = [int(prog_id) for prog_id in child.stdout.readline().split()]
        assert len(prog_ids) == 1 and all(map(_prog_exists, prog_ids)), prog_ids
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    wait_for(lambda: not any(map(_prog_exists, prog_ids)), 10, "the programs to unload")


def _prog_exists(prog_id: int) -> bool:
    return libbpf.prog_name(prog_id) is not None
