"""A veth pair into a network namespace of the test's own, quiet enough to count exactly.

IPv6 is off on both ends and the neighbours are static, so the only frames on the link are the
ones a test sends: no router solicitations, MLD reports or ARP to spoil exact counts. A pair made
with ipv6=True has IPv6 addresses too (static neighbours, no duplicate address detection), and
the kernel's own IPv6 chatter with it: tests of single flows do not mind that.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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

    def in_namespace(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def host_counters(self) -> dict[str, int]:
        """The kernel's own statistics of the host end."""
        stats = Path(f"/sys/class/net/{self.host_iface}/statistics")
        return {
            name: int((stats / name).read_text())
            for name in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")
        }

    def xdp(self) -> str:
        """The XDP lines of `ip -d link` for the host end ("" when nothing is attached)."""
        link = sh("ip", "-d", "link", "show", "dev", self.host_iface)
        return "\n".join(line.strip() for line in link.splitlines() if "xdp" in line)

    def filters(self, side: str) -> str:
        """The TC filters on one side ("ingress" or "egress") of the host end."""
        return sh("tc", "filter", "show", "dev", self.host_iface, side).strip()

    def attached(self) -> str:
        """Everything attached to the host end: XDP, and TC filters on both sides."""
        return "\n".join(
            part for part in (self.xdp(), self.filters("ingress"), self.filters("egress")) if part
        )


def _mac(iface: str, namespace: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return sh(*prefix, "cat", f"/sys/class/net/{iface}/address").strip()


@contextlib.contextmanager
def veth_pair(subnet: str | None = None, ipv6: bool = False, index: int = 0) -> Iterator[VethPair]:
    """The pair, named and addressed after this process so that two runs can coexist; `index`
    tells apart the pairs of one process (pair 0 has the plain names)."""
    tag = os.getpid() % 100000
    suffix = f"x{index}" if index else ""
    subnet = subnet or f"10.{213 + index}.{tag % 200}"
    subnet6 = f"fd00:{213 + index}:{tag % 200}::"
    pair = VethPair(
        f"nmtest{tag}{suffix}",
        f"nmh{tag}{suffix}",
        f"nmn{tag}{suffix}",
        f"{subnet}.1",
        f"{subnet}.2",
        *((f"{subnet6}1", f"{subnet6}2") if ipv6 else ()),
    )
    ns = pair.in_namespace
    try:
        sh("ip", "netns", "add", pair.namespace)
        sh(
            "ip",
            "link",
            "add",
            pair.host_iface,
            "type",
            "veth",
            "peer",
            "name",
            pair.peer_iface,
            "netns",
            pair.namespace,
        )
        Path(f"/proc/sys/net/ipv6/conf/{pair.host_iface}/disable_ipv6").write_text(
            "0" if ipv6 else "1"
        )
        for conf in ("all", "default", "lo", pair.peer_iface):
            sh(*ns("sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6={0 if ipv6 else 1}"))
        peer_mac, host_mac = _mac(pair.peer_iface, pair.namespace), _mac(pair.host_iface)
        addresses = [(pair.host_ip, pair.peer_ip, "/30")]
        if pair.host_ip6 and pair.peer_ip6:
            addresses.append((pair.host_ip6, pair.peer_ip6, "/64"))
        for host_ip, peer_ip, prefix in addresses:
            extra = ["nodad"] if prefix == "/64" else []
            sh("ip", "addr", "add", f"{host_ip}{prefix}", "dev", pair.host_iface, *extra)
            sh(*ns("ip", "addr", "add", f"{peer_ip}{prefix}", "dev", pair.peer_iface, *extra))
            neigh = ("ip", "neigh", "replace")
            sh(*neigh, peer_ip, "lladdr", peer_mac, "dev", pair.host_iface, "nud", "permanent")
            sh(*ns(*neigh, host_ip, "lladdr", host_mac, "dev", pair.peer_iface, "nud", "permanent"))
        sh("ip", "link", "set", pair.host_iface, "up")
        sh(*ns("ip", "link", "set", "lo", "up"))
        sh(*ns("ip", "link", "set", pair.peer_iface, "up"))
        yield pair
    finally:
        sh("ip", "netns", "del", pair.namespace, check=False)
        sh("ip", "link", "del", pair.host_iface, check=False)
