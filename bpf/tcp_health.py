"""TCP health of the watched interfaces' connections: retransmitted segments and a log2
histogram of RTT, by interface.

    health = TcpHealth(objects)          # bpf/pins.py: tcp_health.c loaded and attached
    health.watch("eth0", 2)              # counts eth0's connections from now
    health.read()                        # {2: {"tcp_retransmits": 3, "rtt_00": 0, ...}}

A connection is an interface's when its local address is one of the interface's (see
tcp_health.c for why by address). Retransmits are counted by the tracepoint tcp_retransmit_skb,
attached by bpf/build.py through a bpf_link that lives as long as the set it belongs to: until
the sampler closes a private set, or a kept set is unpinned. RTT is not taken per packet (the
tcp_probe tracepoint fires for every received segment, and cost 3-5% of a fast TCP transfer):
each read() asks sock_diag for the established connections, once for every interface, and
counts, once each, the smoothed RTT of those that received a segment since the previous read.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import logging
import subprocess
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

from bpf import libbpf
from bpf.build import MAX_INTERFACES
from bpf.classes import HEALTH_NAMES, RTT_BUCKETS
from bpf.errors import PreflightError
from bpf.interface_table import InterfaceTable
from bpf.sock_diag import tcp_connections

if TYPE_CHECKING:
    from bpf.pins import Objects

TRACEFS = Path("/sys/kernel/tracing")
TRACEPOINTS = ("tcp_retransmit_skb",)
# How often read() looks the interfaces' addresses up again: an address added later counts
# from then on, at the cost of one `ip addr` run per period.
ADDRESS_REFRESH_SECONDS = 10.0
LOCAL_ADDRESSES = 4096  # entries of local_addrs in tcp_health.c

log = logging.getLogger("netmetrics.bpf")


class _AddrKey(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint8 * 16)]


def mount_tracefs() -> None:
    """BCC reads tracepoint formats and ids from tracefs, which a minimal system may not mount."""
    if (TRACEFS / "events").is_dir():
        return
    result = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True
    )
    if result.returncode != 0 or not (TRACEFS / "events").is_dir():
        raise PreflightError(
            f"tracefs is not mounted and mounting it failed ({result.stderr.strip()}): "
            f"mount -t tracefs nodev {TRACEFS}"
        )


def cflags() -> list[str]:
    """RETRANSMIT_HAS_ERR where tcp_retransmit_skb also reports failures."""
    for name in TRACEPOINTS:
        if not (TRACEFS / "events" / "tcp" / name).is_dir():
            raise PreflightError(
                f"this kernel has no tcp:{name} tracepoint (Linux 4.16 or later has it, with "
                "CONFIG_TRACEPOINTS): TCP health cannot be measured"
            )
    flags = [f"-DMAX_INTERFACES={MAX_INTERFACES}"]
    retransmit_format = TRACEFS / "events" / "tcp" / "tcp_retransmit_skb" / "format"
    if " err;" in retransmit_format.read_text():
        flags.append("-DRETRANSMIT_HAS_ERR")
    return flags


def host_addresses() -> dict[int, set[bytes]]:
    """Every interface's IPv4 and IPv6 addresses, by ifindex, as 16 bytes each, IPv4 v4-mapped
    (as in the C): one `ip addr` run for all of them."""
    result = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PreflightError(f"cannot list the interfaces' addresses: {result.stderr.strip()}")
    addresses: dict[int, set[bytes]] = {}
    for link in json.loads(result.stdout or "[]"):
        packed = addresses.setdefault(link["ifindex"], set())
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if isinstance(address, ipaddress.IPv4Address):
                address = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
            packed.add(address.packed)
    return addresses


def rtt_bucket(rtt_us: int) -> int:
    """The log2 bucket of an RTT of at least 1 us: floor(log2), the last one open-ended."""
    return min(rtt_us.bit_length() - 1, RTT_BUCKETS - 1)


class TcpHealth:
    """Count retransmitted segments, and the RTT of active connections, of the watched
    interfaces' addresses, by ifindex, with the maps and the attached tracepoint of `objects`
    (bpf/build.py attached it by a bpf_link that lives as long as the set)."""

    def __init__(self, objects: Objects) -> None:
        self._retransmits = InterfaceTable(objects.fd("retransmits"), MAX_INTERFACES, 1)
        self._local_addrs = objects.fd("local_addrs")
        self._watched: dict[int, str] = {}  # ifindex -> name
        self._addresses = self._read_addresses()  # local_addrs: address -> ifindex
        self._addresses_at = 0.0  # time.monotonic() of the last address refresh
        self._rtt: dict[int, list[int]] = {}  # by ifindex, cumulative since watch
        self._segs_in: dict[int, int] = {}  # by socket cookie, as the last read saw them
        self._received: int | None = None  # the watched interfaces' TCP segments, at that read

    def _read_addresses(self) -> dict[bytes, int]:
        """What local_addrs holds: a kept set's, as its last sampler left it."""
        keys = ctypes.create_string_buffer(LOCAL_ADDRESSES * 16)
        values = ctypes.create_string_buffer(LOCAL_ADDRESSES * 4)
        count = libbpf.read_batch(self._local_addrs, keys, values, 16, 4)
        ifindexes = array("I", values.raw[: count * 4])
        return {keys.raw[i * 16 : (i + 1) * 16]: ifindexes[i] for i in range(count)}

    def watch(self, iface: str, ifindex: int, rtt: list[int] | None = None) -> None:
        """Count the interface's connections from now, from zero; or, given the RTT buckets
        counted so far (`rtt`), go on from where a previous sampler left its counts."""
        if rtt is None:
            self._retransmits.add(ifindex)
        self._watched[ifindex] = iface
        self._rtt[ifindex] = list(rtt) if rtt is not None else [0] * RTT_BUCKETS
        self._refresh_addresses()

    def unwatch(self, ifindex: int) -> None:
        """Stop counting the interface; its counts are gone."""
        if self._watched.pop(ifindex, None) is None:
            return
        self._rtt.pop(ifindex, None)
        self._retransmits.remove(ifindex)
        self._refresh_addresses()

    def _refresh_addresses(self) -> None:
        """Make local_addrs exactly the watched interfaces' current addresses."""
        by_interface = host_addresses() if self._watched else {}
        current = {
            packed: ifindex for ifindex in self._watched for packed in by_interface.get(ifindex, ())
        }
        for packed in self._addresses.keys() - current.keys():
            libbpf.delete(self._local_addrs, _AddrKey((ctypes.c_uint8 * 16)(*packed)))
        for packed, ifindex in current.items():
            if self._addresses.get(packed) != ifindex:
                key = _AddrKey((ctypes.c_uint8 * 16)(*packed))
                libbpf.update(self._local_addrs, key, ctypes.c_uint32(ifindex))
        self._addresses = current
        self._addresses_at = time.monotonic()

    def read(self, received: int | None = None) -> dict[int, dict[str, int]]:
        """Cumulative counts since each watched interface's watch(), keyed by HEALTH_NAMES, by
        ifindex; the RTT of each connection that received anything since the last read is
        counted now, once, for its interface.

        `received`, the TCP segments the watched interfaces have received so far (their
        rx_tcp_packets), spares listing the connections when it has not moved since the last
        listing: then none of them received anything through a watched interface. (A watched
        address reached through an interface not watched, the weak host model, has its RTT
        counted only when a watched interface's TCP moves too.)
        """
        if self._watched:
            if time.monotonic() - self._addresses_at >= ADDRESS_REFRESH_SECONDS:
                try:
                    self._refresh_addresses()
                except PreflightError as exc:  # `ip` failed: keep counting what is known
                    log.warning("%s", exc)
                    self._addresses_at = time.monotonic()
            if received is None or received != self._received:
                self._poll_rtt()
                self._received = received
        retransmits = self._retransmits.read()
        return {
            ifindex: dict(zip(HEALTH_NAMES, [retransmits.get(ifindex, [0])[0], *rtt], strict=True))
            for ifindex, rtt in self._rtt.items()
        }

    def _poll_rtt(self) -> None:
        """Count the RTT of each watched connection that received a segment since the last
        poll (its segment count moved; a connection new to this poll counts too)."""
        try:
            connections = tcp_connections()
        except OSError as exc:  # sock_diag refused (no module?): RTT waits, retransmits go on
            log.warning("cannot list TCP connections for their RTT: %s", exc)
            return
        seen = {}
        for conn in connections:
            ifindex = self._addresses.get(conn.local)
            if ifindex is None:
                continue
            seen[conn.cookie] = conn.segs_in
            if conn.rtt_us and self._segs_in.get(conn.cookie) != conn.segs_in:
                self._rtt[ifindex][rtt_bucket(conn.rtt_us)] += 1
        self._segs_in = seen
