"""TCP health of the watched interfaces' connections: retransmitted segments and a log2
histogram of RTT, by interface.

    with TcpHealth() as health:          # compiles bpf/tcp_health.c once, attaches a tracepoint
        health.watch("eth0", 2)          # counts eth0's connections from now
        health.read()                    # {2: {"tcp_retransmits": 3, "rtt_00": 0, ...}}

A connection is an interface's when its local address is one of the interface's (see
tcp_health.c for why by address). Retransmits are counted by the tracepoint tcp_retransmit_skb,
attached through a perf event file descriptor of this process, so it goes away with it, even on
SIGKILL: nothing is left behind. RTT is not taken per packet (the tcp_probe tracepoint fires for
every received segment, and cost 3-5% of a fast TCP transfer): each read() asks sock_diag for
the established connections, once for every interface, and counts, once each, the smoothed RTT
of those that received a segment since the previous read.
"""

import ctypes
import ipaddress
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

from bpf.attach import Attachable
from bpf.classes import HEALTH_NAMES, RTT_BUCKETS
from bpf.errors import PreflightError, bcc_bpf, loading
from bpf.interface_table import InterfaceTable
from bpf.program import MAX_INTERFACES
from bpf.sock_diag import tcp_connections

SOURCE = Path(__file__).with_name("tcp_health.c")
TRACEFS = Path("/sys/kernel/tracing")
TRACEPOINTS = ("tcp_retransmit_skb",)
# How often read() looks the interfaces' addresses up again: an address added later counts
# from then on, at the cost of one `ip addr` run per period.
ADDRESS_REFRESH_SECONDS = 10.0

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


def _cflags() -> list[str]:
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


class TcpHealth(Attachable):
    """Count retransmitted segments, and the RTT of active connections, of the watched
    interfaces' addresses, by ifindex."""

    def __init__(self) -> None:
        self._bpf: Any = None  # bcc.BPF (untyped), compiled on the first attach
        self._retransmits: InterfaceTable | None = None
        self._attached = False
        self._watched: dict[int, str] = {}  # ifindex -> name
        self._addresses: dict[bytes, int] = {}  # local_addrs: address -> ifindex
        self._addresses_at = 0.0  # time.monotonic() of the last address refresh
        self._rtt: dict[int, list[int]] = {}  # by ifindex, cumulative since watch
        self._segs_in: dict[int, int] = {}  # by socket cookie, as the last read saw them
        self._received: int | None = None  # the watched interfaces' TCP segments, at that read

    def attach(self) -> None:
        """Compile once and attach the tracepoint (counting nothing until an interface is
        watched).

        BCC attaches a TRACEPOINT_PROBE as it loads it, so the first attach finds it attached;
        a later one attaches it again.
        """
        if self._attached:
            return
        mount_tracefs()
        if self._bpf is None:
            self._bpf = self._compile()
            self._retransmits = InterfaceTable(self._bpf[b"retransmits"].map_fd, MAX_INTERFACES, 1)
        try:
            for name in TRACEPOINTS:
                if _tp(name) not in self._bpf.tracepoint_fds:
                    self._bpf.attach_tracepoint(tp=_tp(name), fn_name=_fn(name))
        except Exception as exc:  # BCC raises bare Exception when perf_event_open fails
            self.detach()
            raise PreflightError(f"cannot attach the TCP tracepoint: {exc}") from None
        self._attached = True

    def _compile(self) -> Any:
        """bcc.BPF of tcp_health.c; BCC is imported here, as it may be missing."""
        BPF = bcc_bpf()
        cflags = _cflags()
        with loading(SOURCE):
            return BPF(src_file=str(SOURCE).encode(), cflags=cflags)

    def watch(self, iface: str, ifindex: int) -> None:
        """Count the interface's connections from now, from zero (after attach)."""
        assert self._retransmits is not None, "attach first"
        self._retransmits.add(ifindex)
        self._watched[ifindex] = iface
        self._rtt[ifindex] = [0] * RTT_BUCKETS
        self._refresh_addresses()

    def unwatch(self, ifindex: int) -> None:
        """Stop counting the interface; its counts are gone."""
        if self._watched.pop(ifindex, None) is None:
            return
        self._rtt.pop(ifindex, None)
        assert self._retransmits is not None
        self._retransmits.remove(ifindex)
        self._refresh_addresses()

    def _refresh_addresses(self) -> None:
        """Make local_addrs exactly the watched interfaces' current addresses."""
        assert self._bpf is not None
        table = self._bpf[b"local_addrs"]
        by_interface = host_addresses() if self._watched else {}
        current = {
            packed: ifindex for ifindex in self._watched for packed in by_interface.get(ifindex, ())
        }
        for packed in self._addresses.keys() - current.keys():
            table.pop(_AddrKey((ctypes.c_uint8 * 16)(*packed)), None)
        for packed, ifindex in current.items():
            if self._addresses.get(packed) != ifindex:
                table[_AddrKey((ctypes.c_uint8 * 16)(*packed))] = ctypes.c_uint32(ifindex)
        self._addresses = current
        self._addresses_at = time.monotonic()

    def read(self, received: int | None = None) -> dict[int, dict[str, int]]:
        """Cumulative counts since each watched interface's watch(), keyed by HEALTH_NAMES, by
        ifindex; while attached, the RTT of each connection that received anything since the
        last read is counted now, once, for its interface.

        `received`, the TCP segments the watched interfaces have received so far (their
        rx_tcp_packets), spares listing the connections when it has not moved since the last
        listing: then none of them received anything through a watched interface. (A watched
        address reached through an interface not watched, the weak host model, has its RTT
        counted only when a watched interface's TCP moves too.)
        """
        if self._retransmits is None:
            return {}
        if self._attached and self._watched:
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

    def detach(self) -> None:
        """Detach the tracepoint; idempotent, and never raises (it runs in cleanup paths). The
        counters stay readable until the next attach."""
        if self._bpf is not None:
            for name in TRACEPOINTS:
                if _tp(name) not in self._bpf.tracepoint_fds:
                    continue
                try:
                    self._bpf.detach_tracepoint(_tp(name))
                except Exception as exc:  # BCC raises bare Exception when close() fails
                    log.error("could not detach tcp:%s: %s", name, exc)
        self._attached = False


def _tp(tracepoint: str) -> bytes:
    """BCC's name of a tcp tracepoint, as in its tracepoint_fds."""
    return f"tcp:{tracepoint}".encode()


def _fn(tracepoint: str) -> bytes:
    """The function name BCC gives TRACEPOINT_PROBE(tcp, name)."""
    return f"tracepoint__tcp__{tracepoint}".encode()
