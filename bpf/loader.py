"""The sampler's view of the kernel side: check, attach, read cumulative counters, detach.

    preflight("eth0")                      # PreflightError: one line, cause and fix
    with TrafficCounter("eth0") as tc:     # compiles once, attaches XDP or TC ingress (+ egress)
        tc.attached_mode                   # "native" or "skb": what auto chose
        flows = tc.harvest_flows()         # {raw flow key: counts} since the last harvest
        counts = tc.read()                 # {"rx_tcp_bytes": ..., "tcp_retransmits": ...,
                                           # "flows_dropped": ...} (ALL_COUNTER_NAMES), since attach

The loader installs no signal handlers: the caller detaches in a `finally`, which SIGINT reaches
by KeyboardInterrupt and SIGTERM by whatever handler the caller installs.
"""

import importlib.util
import logging
import os
import socket
from collections.abc import Iterable, Mapping

from bpf import attach
from bpf.classes import ALL_COUNTER_NAMES, DEFAULT_APP_PORTS, HEALTH_NAMES
from bpf.errors import BCC_MISSING, PreflightError
from bpf.flows import FlowCounts
from bpf.iface_lock import CLSACT_NOTE, InterfaceLock
from bpf.program import DEFAULT_FLOW_TABLE, Program
from bpf.tcp_health import TcpHealth

__all__ = ["DEFAULT_APP_PORTS", "PreflightError", "Program", "TrafficCounter", "preflight"]

log = logging.getLogger("netmetrics.bpf")

MODES = ("auto", "native", "skb")
_IFF_UP = 0x1


def preflight(iface: str) -> None:
    """Raise PreflightError if the sampler cannot run on `iface`; it checks, changing nothing."""
    if os.geteuid() != 0:
        raise PreflightError("netmetrics needs root to load eBPF programs: run it with sudo")
    if importlib.util.find_spec("bcc") is None:
        raise PreflightError(BCC_MISSING)
    release = os.uname().release
    if not os.path.exists(f"/lib/modules/{release}/build") and not os.path.exists(
        "/sys/kernel/kheaders.tar.xz"
    ):
        raise PreflightError(
            f"kernel headers for {release} are missing: apt-get install linux-headers-{release}, "
            "or run make setup (it links Debian's headers when the kernel has no package)"
        )
    known = sorted(name for _, name in socket.if_nameindex())
    if iface not in known:
        raise PreflightError(f"unknown interface {iface!r}; known interfaces: {', '.join(known)}")
    with open(f"/sys/class/net/{iface}/flags") as f:
        if not int(f.read(), 16) & _IFF_UP:
            raise PreflightError(
                f"interface {iface} is down: bring it up with `ip link set dev {iface} up`"
            )


class TrafficCounter(attach.Attachable):
    """Count an interface's traffic by class: ingress by native XDP or TC, egress by TC; and the
    TCP health of its connections (bpf/tcp_health.py) by tracepoints.

    `mode` picks the ingress program: native (driver) XDP, skb (a TC ingress filter on the
    socket-buffer path), or auto (native XDP where it pays, else skb; see attach_native_xdp).
    `app_ports` overrides DEFAULT_APP_PORTS class by class ({"http": [80, 8080]} keeps https and
    dns as they are; an empty list turns a class off). `flow_table` entries hold the flows
    between two harvests; 0 turns flows off. Without `tcp_health` no tracepoint is attached and
    its counters stay zero (it costs a few percent of TCP throughput: see the README).
    """

    def __init__(
        self,
        iface: str,
        mode: str = "auto",
        egress: bool = True,
        app_ports: Mapping[str, Iterable[int]] = DEFAULT_APP_PORTS,
        flow_table: int = DEFAULT_FLOW_TABLE,
        tcp_health: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.iface = iface
        self.mode = mode
        self.egress = egress
        self.flow_table = flow_table
        self.app_ports = {**DEFAULT_APP_PORTS, **{k: tuple(v) for k, v in app_ports.items()}}
        self._program: Program | None = None
        self._health = TcpHealth(iface) if tcp_health else None
        self._lock = InterfaceLock(iface)
        self._ifindex = 0
        self._got_mode: str | None = None  # native or skb, set while attached
        self._native_xdp = False  # our XDP program is attached
        self._filters: dict[str, attach.TcAttachment] = {}  # our TC filters by side
        self._owns_qdisc = False

    @property
    def attached_mode(self) -> str | None:
        """native or skb while attached, else None."""
        return self._got_mode

    def attach(self) -> str:
        """Attach the programs with zeroed counters; return the mode got (native or skb).

        The caller runs preflight() first (once: it checks root, BCC, headers and the
        interface). On any failure, what was attached is detached again before PreflightError
        is raised.
        """
        if self._got_mode is not None:
            return self._got_mode
        self._lock.acquire()
        try:
            self._got_mode = self._attach_locked()
        except OSError as exc:  # an unexpected kernel refusal: still one line for the user
            self.detach()
            raise PreflightError(f"cannot attach to {self.iface}: {exc}") from None
        except BaseException:
            self.detach()
            raise
        return self._got_mode

    def _attach_locked(self) -> str:
        if self._program is None:
            self._program = Program(self.app_ports, self.flow_table)
        self._program.reset()
        self._ifindex = ifindex = socket.if_nametoindex(self.iface)
        # A killed predecessor's qdisc is ours to remove as much as one we create: it noted
        # creating it, and its filter still there proves the qdisc is that one.
        leftovers = {side: attach.tc_leftover(ifindex, side) for side in attach.TC_SIDES}
        self._owns_qdisc = CLSACT_NOTE in self._lock.previous_notes and any(leftovers.values())

        self._native_xdp = attach.attach_native_xdp(
            self.iface, ifindex, self._program.xdp_fd, self.mode
        )
        wanted = {"ingress": not self._native_xdp, "egress": self.egress}
        for side, leftover in leftovers.items():
            if not wanted[side] and leftover is not None:
                log.warning(
                    "removing a netmetrics %s filter left on %s by a sampler that did not exit "
                    "cleanly",
                    side,
                    self.iface,
                )
                attach.detach_tc(self.iface, ifindex, side, leftover)
        for side in (side for side, want in wanted.items() if want):
            tc = attach.attach_tc(self.iface, ifindex, side, self._program.tc_fds[side])
            self._filters[side] = tc
            self._owns_qdisc |= tc.created_qdisc
        if self._owns_qdisc and not self._filters:
            self._release_qdisc()
        if self._owns_qdisc:
            self._lock.note(CLSACT_NOTE)
        if self._health:
            self._health.attach()
        log.info(
            "counting %s: ingress by %s, egress %s, TCP health %s",
            self.iface,
            "native XDP" if self._native_xdp else "TC (skb mode)",
            "by TC" if self.egress else "off",
            "on" if self._health else "off",
        )
        return "native" if self._native_xdp else "skb"

    def read(self) -> dict[str, int]:
        """Cumulative counters since attach, summed over CPUs, keyed by ALL_COUNTER_NAMES (all
        zero before the first attach)."""
        if self._program is None:
            return dict.fromkeys(ALL_COUNTER_NAMES, 0)
        flows = self._program.flows
        dropped = {"flows_dropped": flows.dropped if flows else 0}
        health = self._health.read() if self._health else dict.fromkeys(HEALTH_NAMES, 0)
        return {**self._program.read(), **health, **dropped}

    def harvest_flows(self) -> dict[bytes, FlowCounts]:
        """Each flow's traffic since the last harvest (bpf/flow_table.py); empty with flows off."""
        if self._program is None or self._program.flows is None:
            return {}
        return self._program.flows.harvest()

    def detach(self) -> None:
        """Remove exactly what attach() added; idempotent, and never raises for a cleanup step."""
        if self._health:
            self._health.detach()
        for side, tc in self._filters.items():
            try:
                attach.detach_tc(self.iface, self._ifindex, side, tc.prog_id)
            except (OSError, ValueError) as exc:
                log.error("could not remove the %s filter from %s: %s", side, self.iface, exc)
        self._filters = {}
        self._release_qdisc()
        if self._native_xdp:
            assert self._program is not None
            try:
                attach.detach_xdp(self.iface, self._ifindex, self._program.xdp_fd)
            except OSError as exc:
                log.error("could not remove the XDP program from %s: %s", self.iface, exc)
            self._native_xdp = False
        self._got_mode = None
        self._lock.release()

    def _release_qdisc(self) -> None:
        """Remove the clsact qdisc if it is ours and holds no filter of anyone's any more."""
        if not self._owns_qdisc:
            return
        try:
            attach.remove_clsact_if_empty(self.iface, self._ifindex)
        except (OSError, ValueError) as exc:
            log.error("could not remove the clsact qdisc from %s: %s", self.iface, exc)
        self._owns_qdisc = False
