"""The sampler's view of the kernel side: check, attach, read cumulative counters, detach.

    preflight()                            # PreflightError: one line, cause and fix
    with TrafficCounter() as counter:      # loads once, or reuses what is pinned (bpf/pins.py)
        counter.add("eth0")                # attaches XDP or TC ingress (+ egress): Counted
        counter.add("eth1")                # the same programs, on another interface
        flows = counter.harvest_flows()    # {"eth0": {raw flow key: counts}, ...} since the last
        counts = counter.read()            # {"eth0": {"rx_tcp_bytes": ..., "tcp_retransmits": ...,
                                           # "flows_dropped": ...} (ALL_COUNTER_NAMES), ...}
        counter.remove("eth1")             # since add, by interface
                                           # leaving the block removes every interface

Counters outlive the sampler: what it loads is pinned in bpffs and stays attached when it is
killed, and with `persist` when it stops. The next start finds each interface's counters still
counting and its hooks in place (Counted.token then names the run they belong to: continue it
with resume(), or start afresh with reset()).

The loader installs no signal handlers: the caller detaches in a `finally`, which SIGINT reaches
by KeyboardInterrupt and SIGTERM by whatever handler the caller installs.
"""

import importlib.util
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bpf import attach, capabilities
from bpf.build import Build
from bpf.classes import COUNTER_NAMES, DEFAULT_APP_PORTS, HEALTH_NAMES, RTT_BUCKETS, RTT_NAMES
from bpf.errors import BCC_MISSING, PreflightError
from bpf.flows import FlowCounts
from bpf.hooks import InterfaceHooks, detach_leftovers
from bpf.pins import Objects
from bpf.program import DEFAULT_FLOW_TABLE, Program
from bpf.tcp_health import TcpHealth

__all__ = [
    "DEFAULT_APP_PORTS",
    "PreflightError",
    "Program",
    "TrafficCounter",
    "check_interface",
    "preflight",
]

log = logging.getLogger("netmetrics.bpf")

MODES = ("auto", "native", "skb")
_IFF_UP = 0x1


def preflight() -> None:
    """Raise PreflightError if the sampler cannot run here; it checks, changing nothing."""
    lacking = capabilities.missing()
    if lacking:
        why = capabilities.NEEDED
        raise PreflightError(
            "netmetrics needs root, or these capabilities that it lacks: "
            + "; ".join(f"{name} {why[name][1]}" for name in lacking)
            + ". Run it with sudo, or as the netmetrics-sampler service (sudo make install)"
        )
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


LISTED_INTERFACES = 12  # in the error for an unknown one


def check_interface(iface: str) -> None:
    """Raise PreflightError unless `iface` exists and is up."""
    known = sorted(name for _, name in socket.if_nameindex())
    if iface not in known:
        shown = ", ".join(known[:LISTED_INTERFACES])
        more = len(known) - LISTED_INTERFACES
        if more > 0:  # a host with dozens of container veths: one readable line still
            shown += f" and {more} more (ip -br link lists them)"
        raise PreflightError(f"unknown interface {iface!r}; known interfaces: {shown}")
    with open(f"/sys/class/net/{iface}/flags") as f:
        if not int(f.read(), 16) & _IFF_UP:
            raise PreflightError(
                f"interface {iface} is down: bring it up with `ip link set dev {iface} up`"
            )


@dataclass(frozen=True)
class Counted:
    """An interface being counted: its ifindex, the ingress mode it got, and the token of the
    run its counters belong to when they were counting before this start (else 0)."""

    ifindex: int
    mode: str  # native or skb
    token: int = 0


class TrafficCounter(attach.Attachable):
    """Count interfaces' traffic by class, each on its own: ingress by native XDP or TC,
    egress by TC; and the TCP health of their connections (bpf/tcp_health.py) by a tracepoint.
    attach() loads once (or reuses what a previous sampler kept pinned: bpf/pins.py); add() and
    remove() then attach the same programs to interfaces and detach them, at any time; with
    `persist`, detach() leaves everything counting for the next sampler.

    `mode` picks the ingress program: native (driver) XDP, skb (a TC ingress filter on the
    socket-buffer path), or auto (native XDP where it pays, else skb; see attach_native_xdp),
    for each interface. `app_ports` overrides DEFAULT_APP_PORTS class by class ({"http": [80,
    8080]} keeps https and dns as they are; an empty list turns a class off). `flow_table`
    entries hold every interface's flows between two harvests; 0 turns flows off. Without
    `tcp_health` no tracepoint is attached and its counters stay zero (it costs a few percent of
    TCP throughput: see the README).
    """

    def __init__(
        self,
        mode: str = "auto",
        egress: bool = True,
        app_ports: Mapping[str, Iterable[int]] = DEFAULT_APP_PORTS,
        flow_table: int = DEFAULT_FLOW_TABLE,
        tcp_health: bool = True,
        persist: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.egress = egress
        self.flow_table = flow_table
        self.app_ports = {**DEFAULT_APP_PORTS, **{k: tuple(v) for k, v in app_ports.items()}}
        self.tcp_health = tcp_health
        self.persist = persist
        self._objects: Objects | None = None
        self._program: Program | None = None
        self._health: TcpHealth | None = None
        self._hooks: dict[str, InterfaceHooks] = {}
        self.counted: dict[str, Counted] = {}  # by name, as added

    def attach(self) -> None:
        """Load the programs once (the TCP tracepoint attached with them), or open the kept
        ones that a previous sampler pinned with the same build.

        The caller runs preflight() first (once: it checks root, BCC and headers).
        """
        if self._program is not None:
            return
        build = Build.of(self.app_ports, self.flow_table, self.tcp_health)
        self._objects = Objects.kept_or_private(build)
        try:
            self._program = Program(self.app_ports, self.flow_table, self._objects)
            self._health = TcpHealth(self._objects) if self.tcp_health else None
        except BaseException:
            self._objects.close()
            self._objects = None
            raise
        if self.persist and not self._objects.kept:
            log.warning("--persist: this sampler's counters are its own, and stop with it")

    def add(self, iface: str) -> Counted:
        """Count `iface`: from now, from zero; or, where its counters were counting since before
        this start with these very hooks, from where they are (Counted.token is then the run's).

        On any failure (PreflightError, one line), nothing stays attached to the interface.
        """
        assert self._program is not None, "attach first"
        try:
            ifindex = socket.if_nametoindex(iface)
        except OSError:
            raise PreflightError(f"interface {iface} is gone") from None
        hooks = InterfaceHooks(iface, ifindex, self.mode, self.egress)
        counting = self._program.has_interface(ifindex)
        if not counting:
            self._program.add_interface(ifindex)
        try:
            mode = hooks.attach(self._program)
            token = self._program.token(ifindex) if counting and hooks.adopted else 0
            if counting and not token:
                log.info("%s: its hooks changed since the last sampler: counting afresh", iface)
                self._program.add_interface(ifindex)
            if self._health:
                self._health.watch(iface, ifindex, [0] * RTT_BUCKETS if token else None)
        except BaseException as exc:
            hooks.detach()
            self._program.remove_interface(ifindex)
            if isinstance(exc, OSError):  # an unexpected kernel refusal: still one line
                raise PreflightError(f"cannot attach to {iface}: {exc}") from None
            raise
        self._hooks[iface] = hooks
        self.counted[iface] = counted = Counted(ifindex, mode, token)
        log.info(
            "counting %s (ifindex %d): ingress by %s, egress %s, TCP health %s%s",
            iface,
            ifindex,
            "native XDP" if mode == "native" else "TC (skb mode)",
            "by TC" if self.egress else "off",
            "on" if self._health else "off",
            ", counters kept from before" if token else "",
        )
        return counted

    def resume(self, iface: str, recorded: Mapping[str, int]) -> None:
        """Go on with the counts of a run the kernel's counters were kept for: `recorded`, its
        cumulative counts as last written, gives what only this process counts (RTT, flows
        dropped) their starting values."""
        counted = self.counted[iface]
        assert self._program is not None
        if self._health:
            rtt = [recorded[name] for name in RTT_NAMES]
            self._health.watch(iface, counted.ifindex, rtt)
        if self._program.flows:
            self._program.flows.resume(counted.ifindex, recorded["flows_dropped"])

    def reset(self, iface: str) -> None:
        """Count the interface from zero from now (its kept counters belong to no run found)."""
        counted = self.counted[iface]
        assert self._program is not None
        self._program.add_interface(counted.ifindex)
        if self._health:
            self._health.watch(iface, counted.ifindex)
        self.counted[iface] = Counted(counted.ifindex, counted.mode)

    def token(self, iface: str | None) -> int:
        """The run token of the interface's counters (None: the host total's); 0 for none."""
        assert self._program is not None
        return self._program.token(None if iface is None else self.counted[iface].ifindex)

    def set_token(self, iface: str | None, token: int) -> None:
        """Tie the interface's counters (None: the host total) to a run."""
        assert self._program is not None
        self._program.set_token(None if iface is None else self.counted[iface].ifindex, token)

    def remove(self, iface: str) -> None:
        """Stop counting `iface`: detach exactly what add() attached; never raises for that."""
        hooks = self._hooks.pop(iface, None)
        counted = self.counted.pop(iface, None)
        if hooks is None or counted is None:
            return
        hooks.detach()
        if self._health:
            self._health.unwatch(counted.ifindex)
        assert self._program is not None
        try:
            self._program.remove_interface(counted.ifindex)
        except OSError as exc:
            log.error("could not forget the counters of %s: %s", iface, exc)

    def read(self) -> dict[str, dict[str, int]]:
        """Each counted interface's cumulative counters since its add(), summed over CPUs,
        keyed by ALL_COUNTER_NAMES."""
        if self._program is None:
            return {}
        counters = self._program.read()
        received = sum(c["rx_tcp_packets"] for c in counters.values())
        health = self._health.read(received) if self._health else {}
        flows = self._program.flows
        no_counters, no_health = dict.fromkeys(COUNTER_NAMES, 0), dict.fromkeys(HEALTH_NAMES, 0)
        counts = {}
        for iface, counted in self.counted.items():
            dropped = flows.dropped.get(counted.ifindex, 0) if flows else 0
            counts[iface] = {
                **counters.get(counted.ifindex, no_counters),
                **health.get(counted.ifindex, no_health),
                "flows_dropped": dropped,
            }
        return counts

    def harvest_flows(self) -> dict[str, dict[bytes, FlowCounts]]:
        """Each counted interface's flows since the last harvest (bpf/flow_table.py); empty
        with flows off."""
        if self._program is None or self._program.flows is None:
            return {}
        by_ifindex = self._program.flows.harvest()
        return {
            iface: by_ifindex.get(counted.ifindex, {}) for iface, counted in self.counted.items()
        }

    def drop_others(self) -> None:
        """Detach and forget the interfaces a previous sampler left counting in the kept set
        that this one does not count (its selection changed, or the interface went away)."""
        assert self._program is not None
        mine = {counted.ifindex for counted in self.counted.values()}
        for ifindex in set(self._program.interfaces()) - mine:
            try:
                name = detach_leftovers(ifindex)
            except PreflightError as exc:  # a live sampler's now: its own to remove
                log.info("%s", exc)
                continue
            self._program.remove_interface(ifindex)
            log.info(
                "stopped counting %s: kept by the last sampler, not chosen now", name or ifindex
            )

    def detach(self) -> None:
        """Remove every interface and unload (unpinned); with `persist` and a kept set, leave
        everything attached and counting for the next start instead. Idempotent, and never
        raises for a cleanup step."""
        if self._objects is None or self._program is None:
            return
        if self.persist and self._objects.kept:
            for hooks in self._hooks.values():
                hooks.leave()
            self._hooks, self.counted = {}, {}
            self._objects.close()
            log.info(
                "left the programs attached and counting, pinned in %s", self._objects.directory
            )
        else:
            for iface in list(self._hooks):
                self.remove(iface)
            self.drop_others()
            self._objects.remove()
        self._objects, self._program, self._health = None, None, None
