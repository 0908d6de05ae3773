"""What netmetrics attaches to one interface: native XDP or a TC ingress filter, a TC egress
filter, and the clsact qdisc when it created it, all under the interface's lock (one sampler per
interface: bpf/iface_lock.py). The programs are one compilation for every interface
(bpf/program.py); the hooks only say where they run.
"""

from __future__ import annotations

import logging
import socket

from bpf import attach
from bpf.iface_lock import CLSACT_NOTE, InterfaceLock
from bpf.program import XDP_FUNCTION, Program

log = logging.getLogger("netmetrics.bpf")


class InterfaceHooks:
    """The interface's hooks, attached by attach() and removed, exactly, by detach().

    `mode` picks the ingress program: native (driver) XDP, skb (a TC ingress filter on the
    socket-buffer path), or auto (native XDP where it pays, else skb; see attach_native_xdp).
    """

    def __init__(self, iface: str, ifindex: int, mode: str, egress: bool) -> None:
        self.iface = iface
        self.ifindex = ifindex
        self.mode = mode
        self.egress = egress
        self._lock = InterfaceLock(iface)
        self._xdp_fd: int | None = None  # our native XDP program's, while attached
        self._filters: dict[str, attach.TcAttachment] = {}  # our TC filters by side
        self._owns_qdisc = False
        # Whether attach() found every hook it wanted already there with this very program (a
        # kept set's, left by the last sampler) and changed nothing: then the interface was
        # counted all along.
        self.adopted = False

    def attach(self, program: Program) -> str:
        """Attach the program's entry points; return the mode got (native or skb). A hook that
        already runs this very program is kept as it is (no frame goes uncounted).

        On any failure, what was attached is detached again before the error (PreflightError,
        or OSError for an unexpected kernel refusal) is raised.
        """
        self._lock.acquire()
        try:
            return self._attach_locked(program)
        except BaseException:
            self.detach()
            raise

    def _attach_locked(self, program: Program) -> str:
        # A killed predecessor's qdisc is ours to remove as much as one we create: it noted
        # creating it, and its filter still there proves the qdisc is that one.
        leftovers = {side: attach.tc_leftover(self.ifindex, side) for side in attach.TC_SIDES}
        self._owns_qdisc = CLSACT_NOTE in self._lock.previous_notes and any(leftovers.values())

        ours = [p for p in attach.xdp_programs(self.ifindex) if p.ours]
        pinned = attach.XdpProgram(program.prog_ids["xdp"], XDP_FUNCTION, "native")
        xdp_kept = ours == [pinned] and (
            self.mode == "native" or (self.mode == "auto" and attach.native_pays(self.iface))
        )
        native = xdp_kept or attach.attach_native_xdp(
            self.iface, self.ifindex, program.xdp_fd, self.mode
        )
        if native:
            self._xdp_fd = program.xdp_fd
        wanted = {"ingress": self._xdp_fd is None, "egress": self.egress}
        kept = {
            side: leftover == program.prog_ids[side]
            for side, leftover in leftovers.items()
            if wanted[side] and leftover is not None
        }
        self.adopted = (
            ((self._xdp_fd is None and not ours) or xdp_kept)
            and all(kept.get(side, False) for side, want in wanted.items() if want)
            and not any(leftover for side, leftover in leftovers.items() if not wanted[side])
        )
        for side, leftover in leftovers.items():
            if not wanted[side] and leftover is not None:
                log.warning(
                    "removing a netmetrics %s filter left on %s by a sampler that did not exit "
                    "cleanly",
                    side,
                    self.iface,
                )
                attach.detach_tc(self.iface, self.ifindex, side, leftover)
        for side in (side for side, want in wanted.items() if want):
            if kept.get(side):
                self._filters[side] = attach.TcAttachment(program.prog_ids[side], False)
                continue
            tc = attach.attach_tc(self.iface, self.ifindex, side, program.tc_fds[side])
            self._filters[side] = tc
            self._owns_qdisc |= tc.created_qdisc
        if self._owns_qdisc and not self._filters:
            self._release_qdisc()
        if self._owns_qdisc:
            self._lock.note(CLSACT_NOTE)
        return "native" if self._xdp_fd is not None else "skb"

    def detach(self) -> None:
        """Remove exactly what attach() added; idempotent, and never raises for a cleanup step.

        An interface that is gone took our hooks with it; one that was renamed still has them,
        and loses them by its ifindex.
        """
        for side, tc in self._filters.items():
            try:
                attach.detach_tc(self.iface, self.ifindex, side, tc.prog_id)
            except (OSError, ValueError) as exc:
                log.error("could not remove the %s filter from %s: %s", side, self.iface, exc)
        self._filters = {}
        self._release_qdisc()
        if self._xdp_fd is not None:
            try:
                attach.detach_xdp(self.iface, self.ifindex, self._xdp_fd)
            except OSError as exc:
                log.error("could not remove the XDP program from %s: %s", self.iface, exc)
            self._xdp_fd = None
        self._lock.release()

    def leave(self) -> None:
        """Leave the hooks attached and counting (a kept set's, for the next sampler to adopt),
        and the lock's notes for it; this object lets go of them."""
        self._filters = {}
        self._xdp_fd = None
        self._lock.release(keep_notes=True)

    def _release_qdisc(self) -> None:
        """Remove the clsact qdisc if it is ours and holds no filter of anyone's any more."""
        if not self._owns_qdisc:
            return
        try:
            name = socket.if_indextoname(self.ifindex)  # the current name, if it was renamed
        except OSError:  # gone, and the qdisc with it
            self._owns_qdisc = False
            return
        try:
            attach.remove_clsact_if_empty(name, self.ifindex)
        except (OSError, ValueError) as exc:
            log.error("could not remove the clsact qdisc from %s: %s", self.iface, exc)
        self._owns_qdisc = False


def detach_leftovers(ifindex: int) -> str | None:
    """Remove what netmetrics left attached to the interface (programs recognised by name), and
    the clsact qdisc its lock notes a sampler created; the interface's name, None when it is
    gone. PreflightError when a live sampler holds the interface."""
    try:
        iface = socket.if_indextoname(ifindex)
    except OSError:
        return None
    lock = InterfaceLock(iface)
    lock.acquire()
    try:
        for program in attach.xdp_programs(ifindex):
            if program.ours:
                attach.detach_xdp_by_id(ifindex, program)
        filters = {side: attach.tc_leftover(ifindex, side) for side in attach.TC_SIDES}
        for side, prog_id in filters.items():
            if prog_id is not None:
                attach.detach_tc(iface, ifindex, side, prog_id)
        if CLSACT_NOTE in lock.previous_notes and any(filters.values()):
            attach.remove_clsact_if_empty(iface, ifindex)
    finally:
        lock.release()
    return iface
