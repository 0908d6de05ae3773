"""A veth pair into a network namespace of the test's own, quiet enough to count exactly.

IPv6 is off on both ends and the neighbours are static, so the only frames on the link are the
ones a test sends: no router solicitations, MLD reports or ARP to spoil exact counts. A pair made
with ipv6=True has IPv6 addresses too (static neighbours, no duplicate address detection), and
the kernel's own IPv6 chatter with it: tests of single flows do not mind that.

A pair's host end is in the root namespace, or in `host_namespace` for a test whose sampler
runs in a namespace of its own. A bridge() has veth ports whose peers are hosts on the
bridge's subnet: the address is on the bridge, none on its ports.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

UDP_PAYLOAD = 100
UDP_FRAME = 14 + 20 + 8 + UDP_PAYLOAD  # Ethernet, IPv4 and UDP headers
_SEND = (
    "import socket, sys, time\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "for _ in range(int(sys.argv[2])):\n"
    f"    u.sendto(b'x' * {UDP_PAYLOAD}, (sys.argv[1], 9))\n"
    "    time.sleep(float(sys.argv[3]))"
)


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


@dataclass(frozen=True)
class VethPair:
    namespace: str
    host_iface: str  # in the root namespace: the sampler attaches here
    peer_iface: str  # inside the namespace
    host_ip: str
    peer_ip: str
    host_ip6: str | None = None
    peer_ip6: str | None = None
    host_namespace: str | None = None  # the host end's; None: the root namespace

    def in_namespace(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def send_udp(self, count: int) -> None:
        """`count` UDP datagrams of UDP_PAYLOAD bytes (UDP_FRAME on the wire) from the namespace
        into the host end, to port 9 (nobody listens: the host's ICMP answers are its egress)."""
        assert self.sending_udp(count, 0.0).wait() == 0

    def sending_udp(self, count: int, pause: float) -> subprocess.Popen[bytes]:
        """send_udp in the background, with a pause of `pause` seconds after each datagram."""
        return subprocess.Popen(
            self.in_namespace(sys.executable, "-c", _SEND, self.host_ip, str(count), str(pause))
        )

    def on_host(self, *args: str) -> list[str]:
        """A command line run where the host end is."""
        return _in(self.host_namespace, *args)

    def host_counters(self) -> dict[str, int]:
        """The kernel's own statistics of the host end."""
        stats = Path(f"/sys/class/net/{self.host_iface}/statistics")
        return {
            name: int((stats / name).read_text())
            for name in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")
        }

    def xdp(self) -> str:
        """The XDP lines of `ip -d link` for the host end ("" when nothing is attached)."""
        link = sh(*self.on_host("ip", "-d", "link", "show", "dev", self.host_iface))
        return "\n".join(line.strip() for line in link.splitlines() if "xdp" in line)

    def filters(self, side: str) -> str:
        """The TC filters on one side ("ingress" or "egress") of the host end."""
        return sh(*self.on_host("tc", "filter", "show", "dev", self.host_iface, side)).strip()

    def attached(self) -> str:
        """Everything attached to the host end: XDP, and TC filters on both sides."""
        return "\n".join(
            part for part in (self.xdp(), self.filters("ingress"), self.filters("egress")) if part
        )


def _in(namespace: str | None, *args: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *args] if namespace else list(args)


def _mac(iface: str, namespace: str | None = None) -> str:
    return sh(*_in(namespace, "cat", f"/sys/class/net/{iface}/address")).strip()


def _no_ipv6(iface: str, namespace: str | None = None, off: bool = True) -> None:
    sh(*_in(namespace, "sysctl", "-qw", f"net.ipv6.conf.{iface}.disable_ipv6={int(off)}"))


def _static_neighbour(ip: str, mac: str, dev: str, namespace: str | None = None) -> None:
    """No ARP or neighbour discovery on the link: the neighbour is known for good."""
    sh(*_in(namespace, "ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent"))


def _make_veth(pair: VethPair, ipv6: bool) -> None:
    """The namespace and the pair, IPv6 on or off on both ends, the peer's side up."""
    sh("ip", "netns", "add", pair.namespace)
    sh(
        *pair.on_host("ip", "link", "add", pair.host_iface, "type", "veth"),
        *("peer", "name", pair.peer_iface, "netns", pair.namespace),
    )
    _no_ipv6(pair.host_iface, pair.host_namespace, off=not ipv6)
    for conf in ("all", "default", "lo", pair.peer_iface):
        _no_ipv6(conf, pair.namespace, off=not ipv6)
    sh(*pair.in_namespace("ip", "link", "set", "lo", "up"))
    sh(*pair.in_namespace("ip", "link", "set", pair.peer_iface, "up"))


def restore_neighbours(pair: VethPair) -> None:
    """The host end's static neighbour again: a link set down flushes even permanent ones."""
    peer_mac = _mac(pair.peer_iface, pair.namespace)
    _static_neighbour(pair.peer_ip, peer_mac, pair.host_iface, pair.host_namespace)


@contextlib.contextmanager
def veth_pair(
    subnet: str | None = None,
    ipv6: bool = False,
    index: int = 0,
    host_namespace: str | None = None,
    host_iface: str | None = None,
) -> Iterator[VethPair]:
    """The pair, named and addressed after this process so that two runs can coexist; `index`
    tells apart the pairs of one process (pair 0 has the plain names)."""
    tag = os.getpid() % 100000
    suffix = f"x{index}" if index else ""
    subnet = subnet or f"10.{213 + index}.{tag % 200}"
    subnet6 = f"fd00:{213 + index}:{tag % 200}::"
    pair = VethPair(
        f"nmtest{tag}{suffix}",
        host_iface or f"nmh{tag}{suffix}",
        f"nmn{tag}{suffix}",
        f"{subnet}.1",
        f"{subnet}.2",
        host_ip6=f"{subnet6}1" if ipv6 else None,
        peer_ip6=f"{subnet6}2" if ipv6 else None,
        host_namespace=host_namespace,
    )
    try:
        _make_veth(pair, ipv6)
        addresses = [(pair.host_ip, pair.peer_ip, "/30")]
        if pair.host_ip6 and pair.peer_ip6:
            addresses.append((pair.host_ip6, pair.peer_ip6, "/64"))
        host_mac = _mac(pair.host_iface, host_namespace)
        for host_ip, peer_ip, prefix in addresses:
            extra = ["nodad"] if prefix == "/64" else []
            on_host = pair.on_host("ip", "addr", "add", f"{host_ip}{prefix}")
            sh(*on_host, "dev", pair.host_iface, *extra)
            on_peer = pair.in_namespace("ip", "addr", "add", f"{peer_ip}{prefix}")
            sh(*on_peer, "dev", pair.peer_iface, *extra)
            _static_neighbour(host_ip, host_mac, pair.peer_iface, pair.namespace)
        restore_neighbours(pair)
        if pair.peer_ip6:
            peer_mac = _mac(pair.peer_iface, pair.namespace)
            _static_neighbour(pair.peer_ip6, peer_mac, pair.host_iface, host_namespace)
        sh(*pair.on_host("ip", "link", "set", pair.host_iface, "up"))
        yield pair
    finally:
        sh("ip", "netns", "del", pair.namespace, check=False)  # takes the pair with it
        sh(*pair.on_host("ip", "link", "del", pair.host_iface), check=False)


@dataclass(frozen=True)
class Bridge:
    name: str
    ip: str
    # Each port's host_iface is the bridge's port and its host_ip the bridge's address: the
    # peers send to the bridge.
    ports: tuple[VethPair, ...]


@contextlib.contextmanager
def bridge(ports: int = 2) -> Iterator[Bridge]:
    """A bridge in the root namespace with `ports` veth ports, each to a host in a namespace;
    as quiet as a veth_pair (no IPv6, static neighbours, STP off)."""
    tag = os.getpid() % 100000
    subnet = f"10.230.{tag % 200}"
    name = f"nmbr{tag}"
    pairs = tuple(
        VethPair(
            f"nmtest{tag}b{i}",
            f"nmbp{tag}p{i}",
            f"nmn{tag}b{i}",
            f"{subnet}.1",
            f"{subnet}.{i + 2}",
        )
        for i in range(ports)
    )
    try:
        sh("ip", "link", "add", name, "type", "bridge", "stp_state", "0")
        _no_ipv6(name)
        for pair in pairs:
            _make_veth(pair, ipv6=False)
            sh("ip", "link", "set", pair.host_iface, "master", name)
            sh("ip", "link", "set", pair.host_iface, "up")
            on_peer = pair.in_namespace("ip", "addr", "add", f"{pair.peer_ip}/24")
            sh(*on_peer, "dev", pair.peer_iface)
        sh("ip", "addr", "add", f"{subnet}.1/24", "dev", name)
        sh("ip", "link", "set", name, "up")
        bridge_mac = _mac(name)  # once its ports are in: a bridge takes its lowest port's
        for pair in pairs:
            _static_neighbour(pair.host_ip, bridge_mac, pair.peer_iface, pair.namespace)
            peer_mac = _mac(pair.peer_iface, pair.namespace)
            _static_neighbour(pair.peer_ip, peer_mac, name)
        yield Bridge(name, f"{subnet}.1", pairs)
    finally:
        for pair in pairs:
            sh("ip", "netns", "del", pair.namespace, check=False)
        sh("ip", "link", "del", name, check=False)
