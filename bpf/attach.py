"""Attach and detach the programs on an interface: XDP on ingress, a TC classifier on egress.

Both go through libbpf's netlink calls (bpf_xdp_*, bpf_tc_*) by ctypes, with the program's file
descriptor. Why not iproute2's `tc`: it can only take a program from an ELF file or one pinned in
bpffs, which is not mounted everywhere (it is not here) and would leave pinned files to clean up
after a crash; libbpf.so.1 comes with iproute2 and BCC on Debian anyway, it needs nothing new, and
it gives exact handles: the egress filter has a fixed handle and priority of its own, and XDP is
detached only if the program there is still ours (XDP_FLAGS_REPLACE with our fd).

Leftovers of a sampler that was SIGKILLed are recognised by program name (netmetrics_xdp,
netmetrics_tc, read back from the kernel by program id); programs of other tools are never
removed. Only `tc filter show` is run, to see whether a clsact qdisc we created has emptied.
"""

import ctypes
import errno
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import NamedTuple

from bpf import libbpf
from bpf.errors import PreflightError
from bpf.program import TC_FUNCTION, XDP_FUNCTION

log = logging.getLogger("netmetrics.bpf")

XDP_MODES = {
    "native": libbpf.XDP_FLAGS_DRV_MODE,
    "skb": libbpf.XDP_FLAGS_SKB_MODE,
    "offload": libbpf.XDP_FLAGS_HW_MODE,
}
# The iproute2 word for each mode, to tell users how to remove a program.
_IP_XDP_WORD = {"native": "xdpdrv", "skb": "xdpgeneric", "offload": "xdpoffload"}

# Our egress filter's place: priority 1 runs it before other filters, which it never affects
# (it returns TC_ACT_UNSPEC, "continue"); the handle ("NM") is ours alone.
TC_HANDLE = 0x4E4D
TC_PRIORITY = 1


@dataclass(frozen=True)
class XdpProgram:
    """A program attached to an interface's XDP hook."""

    prog_id: int
    name: str | None
    mode: str

    @property
    def ours(self) -> bool:
        return self.name == XDP_FUNCTION


def xdp_programs(ifindex: int) -> list[XdpProgram]:
    """The XDP programs on an interface, one per mode at most."""
    opts = libbpf.XdpQueryOpts()
    libbpf.check(libbpf.lib().bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), "XDP query")
    ids = {"native": opts.drv_prog_id, "skb": opts.skb_prog_id, "offload": opts.hw_prog_id}
    return [XdpProgram(i, libbpf.prog_name(i), mode) for mode, i in ids.items() if i]


def _detach_xdp_by_id(ifindex: int, program: XdpProgram) -> None:
    """Detach this very program (by fd, so a program attached meanwhile stays)."""
    fd = libbpf.lib().bpf_prog_get_fd_by_id(program.prog_id)
    if fd < 0:
        return  # gone already
    try:
        opts = libbpf.XdpAttachOpts(old_prog_fd=fd)
        rc = libbpf.lib().bpf_xdp_detach(ifindex, XDP_MODES[program.mode], ctypes.byref(opts))
        libbpf.check(rc, f"detach XDP program {program.prog_id}")
    finally:
        os.close(fd)


def attach_xdp(iface: str, ifindex: int, prog_fd: int, mode: str) -> str:
    """Attach in `mode` (auto: native, else skb) and return the mode got.

    A foreign XDP program stops us; a netmetrics leftover is replaced whatever its mode.
    """
    for program in xdp_programs(ifindex):
        if not program.ours:
            name = program.name or "unknown"
            raise PreflightError(
                f"another XDP program ({name}, id {program.prog_id}, {program.mode} mode) is "
                f"attached to {iface}; netmetrics never removes other tools' programs: stop the "
                f"tool that attached it, or remove it with `ip link set dev {iface} "
                f"{_IP_XDP_WORD[program.mode]} off`"
            )
        log.warning(
            "replacing a netmetrics XDP program (id %d, %s mode) left on %s by a sampler that "
            "did not exit cleanly",
            program.prog_id,
            program.mode,
            iface,
        )
        _detach_xdp_by_id(ifindex, program)

    if mode == "auto":
        rc = _attach_xdp_in(ifindex, prog_fd, "native")
        if rc == 0:
            return "native"
        log.info(
            "native XDP unavailable on %s (%s); falling back to skb mode", iface, os.strerror(-rc)
        )
        mode = "skb"
    rc = _attach_xdp_in(ifindex, prog_fd, mode)
    if rc < 0:
        hint = "; try mode skb or auto" if mode == "native" else ""
        raise PreflightError(
            f"cannot attach XDP in {mode} mode to {iface}: {os.strerror(-rc)}{hint}"
        )
    return mode


def _attach_xdp_in(ifindex: int, prog_fd: int, mode: str) -> int:
    """bpf_xdp_attach's result; never replaces a program that appeared since we looked."""
    flags = XDP_MODES[mode] | libbpf.XDP_FLAGS_UPDATE_IF_NOEXIST
    return libbpf.lib().bpf_xdp_attach(ifindex, prog_fd, flags, None)


def detach_xdp(iface: str, ifindex: int, prog_fd: int, mode: str) -> None:
    """Remove our XDP program, only if it is still the one there."""
    opts = libbpf.XdpAttachOpts(old_prog_fd=prog_fd)
    rc = libbpf.lib().bpf_xdp_detach(ifindex, XDP_MODES[mode], ctypes.byref(opts))
    if rc == -errno.EEXIST:
        log.warning("XDP on %s is no longer netmetrics' program; left it alone", iface)
    elif rc == -errno.ENODEV:
        log.info("%s is gone, and our XDP program with it", iface)
    else:
        libbpf.check(rc, f"detach XDP from {iface}")


def _tc_hook(ifindex: int, points: int = libbpf.BPF_TC_EGRESS) -> libbpf.TcHook:
    return libbpf.TcHook(ifindex=ifindex, attach_point=points)


def _tc_filter_prog_id(ifindex: int) -> int | None:
    """Program id of the filter at our handle and priority, None when there is none."""
    opts = libbpf.TcOpts(handle=TC_HANDLE, priority=TC_PRIORITY)
    rc = libbpf.lib().bpf_tc_query(ctypes.byref(_tc_hook(ifindex)), ctypes.byref(opts))
    if rc in (-errno.ENOENT, -errno.EINVAL, -errno.ENODEV):  # no filter, no clsact, no device
        return None
    libbpf.check(rc, "query the egress filter")
    return opts.prog_id


def tc_leftover(ifindex: int) -> int | None:
    """Program id of a netmetrics egress filter at our place, None if there is none of ours."""
    prog_id = _tc_filter_prog_id(ifindex)
    return prog_id if prog_id is not None and libbpf.prog_name(prog_id) == TC_FUNCTION else None


class TcAttachment(NamedTuple):
    """What attach_tc did: detach_tc needs the program id, and whether the qdisc is ours."""

    prog_id: int
    created_qdisc: bool
    replaced_leftover: bool


def attach_tc(iface: str, ifindex: int, prog_fd: int) -> TcAttachment:
    """Add our egress filter, creating the clsact qdisc if missing; replace a leftover of ours."""
    hook = _tc_hook(ifindex)
    rc = libbpf.lib().bpf_tc_hook_create(ctypes.byref(hook))
    if rc not in (0, -errno.EEXIST):
        raise PreflightError(f"cannot create a clsact qdisc on {iface}: {os.strerror(-rc)}")
    created = rc == 0
    flags = 0
    leftover_id = _tc_filter_prog_id(ifindex)
    if leftover_id is not None:
        name = libbpf.prog_name(leftover_id)
        if name != TC_FUNCTION:
            raise PreflightError(
                f"the egress filter at handle {TC_HANDLE:#x} priority {TC_PRIORITY} on {iface} is "
                f"another tool's ({name}, program id {leftover_id}); netmetrics needs that place: "
                f"remove it with `tc filter del dev {iface} egress prio {TC_PRIORITY}` if unused"
            )
        log.warning(
            "replacing a netmetrics egress filter (program id %d) left on %s by a sampler that "
            "did not exit cleanly",
            leftover_id,
            iface,
        )
        flags = libbpf.BPF_TC_F_REPLACE
    opts = libbpf.TcOpts(prog_fd=prog_fd, flags=flags, handle=TC_HANDLE, priority=TC_PRIORITY)
    rc = libbpf.lib().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if rc < 0:
        if created:
            _destroy_clsact(ifindex)
        raise PreflightError(
            f"cannot add the egress filter on {iface} at priority {TC_PRIORITY}: "
            f"{os.strerror(-rc)} (a filter of another kind there is refused; see "
            f"`tc filter show dev {iface} egress`)"
        )
    return TcAttachment(opts.prog_id, created, leftover_id is not None)


def _destroy_clsact(ifindex: int) -> int:
    """Delete the clsact qdisc (both sides: naming one side only would flush its filters)."""
    both = _tc_hook(ifindex, libbpf.BPF_TC_INGRESS | libbpf.BPF_TC_EGRESS)
    return libbpf.lib().bpf_tc_hook_destroy(ctypes.byref(both))


def _has_filters(iface: str) -> bool:
    """Whether the clsact qdisc still holds filters on either side (True when unsure)."""
    if shutil.which("tc") is None:
        return True
    for side in ("ingress", "egress"):
        out = subprocess.run(
            ["tc", "-j", "filter", "show", "dev", iface, side],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0 or json.loads(out.stdout or "[]"):
            return True
    return False


def detach_tc(iface: str, ifindex: int, prog_id: int, remove_qdisc: bool) -> None:
    """Remove our egress filter if it is still ours; then the clsact qdisc if asked and empty."""
    current = _tc_filter_prog_id(ifindex)
    if current is not None and current != prog_id:
        log.warning(
            "the egress filter on %s is no longer netmetrics' program; left it alone", iface
        )
    elif current is not None:
        opts = libbpf.TcOpts(handle=TC_HANDLE, priority=TC_PRIORITY)
        rc = libbpf.lib().bpf_tc_detach(ctypes.byref(_tc_hook(ifindex)), ctypes.byref(opts))
        libbpf.check(rc, f"remove the egress filter from {iface}")
    if remove_qdisc and not _has_filters(iface):
        rc = _destroy_clsact(ifindex)
        if rc not in (0, -errno.ENOENT, -errno.EINVAL):
            libbpf.check(rc, f"remove the clsact qdisc from {iface}")
