"""Attach and detach the programs on an interface: native XDP or a TC classifier on ingress, a TC
classifier on egress.

All of it goes through libbpf's netlink calls (bpf_xdp_*, bpf_tc_*) by ctypes, with the program's
file descriptor. Why not iproute2's `tc`: it takes a program from an ELF file or a pin only, and
libbpf.so.1 (which comes with iproute2 and BCC on Debian anyway) gives exact handles: each TC
filter has a fixed handle and priority of its own, and XDP is detached only if the program there
is still ours (XDP_FLAGS_REPLACE with our fd).

What a sampler left attached (killed, or stopped with --persist) is recognised by program name
(netmetrics_xdp in any XDP mode, since older samplers also used generic XDP; netmetrics_tcin and
netmetrics_tc at our TC places), by program id: libbpf.prog_name knows the pinned sets' programs,
and asks the kernel for others; programs of other tools are never removed. Only
`tc filter show` is run, to see whether a clsact qdisc we created has emptied.
"""

import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Self

from bpf import libbpf
from bpf.errors import PreflightError
from bpf.program import TC_FUNCTIONS, XDP_FUNCTION

log = logging.getLogger("netmetrics.bpf")


class Attachable:
    """`with thing:` attaches on entry and detaches on exit, whatever ends the block."""

    def attach(self) -> object:
        raise NotImplementedError

    def detach(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.attach()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()


XDP_MODES = {
    "native": libbpf.XDP_FLAGS_DRV_MODE,
    "skb": libbpf.XDP_FLAGS_SKB_MODE,
    "offload": libbpf.XDP_FLAGS_HW_MODE,
}
# The iproute2 word for each mode, to tell users how to remove a program.
_IP_XDP_WORD = {"native": "xdpdrv", "skb": "xdpgeneric", "offload": "xdpoffload"}

TC_SIDES = {"ingress": libbpf.BPF_TC_INGRESS, "egress": libbpf.BPF_TC_EGRESS}
# Our filters' place on each side: priority 1 runs them before other filters, which they never
# affect (they return TC_ACT_UNSPEC, "continue"); the handle ("NM") is ours alone.
TC_HANDLE = 0x4E4D
TC_PRIORITY = 1

_SIOCETHTOOL = 0x8946
_ETHTOOL_GDRVINFO = 0x3
_DRVINFO_SIZE = 196  # struct ethtool_drvinfo: cmd, then driver[32], ...
_SKB_FALLBACK = "counting ingress with TC (skb mode)"


def driver_name(iface: str) -> str | None:
    """The interface's driver ("veth", "virtio_net", ...) by ethtool's GDRVINFO; None if unknown.

    The ioctl, not /sys/class/net/IFACE/device/driver: virtual interfaces have no device link.
    """
    info = ctypes.create_string_buffer(struct.pack("I", _ETHTOOL_GDRVINFO), _DRVINFO_SIZE)
    ifreq = struct.pack("16sP16x", iface.encode(), ctypes.addressof(info))  # struct ifreq
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
        except OSError:
            return None
    return info.raw[4:36].split(b"\0", 1)[0].decode(errors="replace") or None


@dataclass(frozen=True)
class XdpProgram:
    """A program attached to an interface's XDP hook."""

    prog_id: int
    name: str | None
    mode: str

    @property
    def ours(self) -> bool:
        return self.name == XDP_FUNCTION

    def describe(self) -> str:
        return f"{self.name or 'unknown'}, id {self.prog_id}, {self.mode} mode"


def xdp_programs(ifindex: int) -> list[XdpProgram]:
    """The XDP programs on an interface, one per mode at most."""
    opts = libbpf.XdpQueryOpts()
    libbpf.check(libbpf.lib().bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), "XDP query")
    ids = {"native": opts.drv_prog_id, "skb": opts.skb_prog_id, "offload": opts.hw_prog_id}
    return [XdpProgram(i, libbpf.prog_name(i), mode) for mode, i in ids.items() if i]


def detach_xdp_by_id(ifindex: int, program: XdpProgram) -> None:
    """Detach this very program (by fd, so a program attached meanwhile stays)."""
    fd = libbpf.prog_fd(program.prog_id)
    if fd is None:
        return  # gone already
    try:
        opts = libbpf.XdpAttachOpts(old_prog_fd=fd)
        rc = libbpf.lib().bpf_xdp_detach(ifindex, XDP_MODES[program.mode], ctypes.byref(opts))
        libbpf.check(rc, f"detach XDP program {program.prog_id}")
    finally:
        os.close(fd)


def attach_native_xdp(iface: str, ifindex: int, prog_fd: int, mode: str) -> bool:
    """Count ingress with native XDP if `mode` asks for it and it pays; True when attached.

    First our leftover XDP programs (any mode) go. Then: `skb` never attaches; `native` does, or
    raises PreflightError (another tool's XDP program is there, or the driver refuses); `auto`
    attaches unless the driver is veth, another tool's XDP program is there, or the driver
    refuses, and logs in one line why it counts with TC instead. Another tool's XDP program runs
    before TC ingress: what it drops or redirects is not counted there, and a warning says so.
    """
    foreign = None
    for program in xdp_programs(ifindex):
        if not program.ours:
            foreign = program
            continue
        log.warning(
            "removing a netmetrics XDP program (id %d, %s mode) left on %s by a sampler that "
            "did not exit cleanly",
            program.prog_id,
            program.mode,
            iface,
        )
        detach_xdp_by_id(ifindex, program)

    if foreign is not None and mode == "native":
        raise PreflightError(
            f"another XDP program ({foreign.describe()}) is attached to {iface}; netmetrics "
            f"never removes other tools' programs: stop the tool that attached it, remove it "
            f"with `ip link set dev {iface} {_IP_XDP_WORD[foreign.mode]} off`, or use --mode skb"
        )
    if foreign is not None:
        log.warning(
            "%sanother XDP program (%s) is attached to %s; %s, after it: frames it drops or "
            "redirects are not counted",
            "auto: " if mode == "auto" else "",
            foreign.describe(),
            iface,
            _SKB_FALLBACK,
        )
        return False
    if mode == "skb":
        return False
    if mode == "auto" and not native_pays(iface):
        log.info("auto: veth loses GSO under native XDP; %s", _SKB_FALLBACK)
        return False
    # UPDATE_IF_NOEXIST: never replace a program attached since we looked.
    flags = XDP_MODES["native"] | libbpf.XDP_FLAGS_UPDATE_IF_NOEXIST
    rc = libbpf.lib().bpf_xdp_attach(ifindex, prog_fd, flags, None)
    if rc == 0:
        return True
    if mode == "native":
        raise PreflightError(
            f"cannot attach native XDP to {iface}: {os.strerror(-rc)}; try --mode auto or skb"
        )
    log.info("native XDP unavailable on %s (%s); %s", iface, os.strerror(-rc), _SKB_FALLBACK)
    return False


def native_pays(iface: str) -> bool:
    """Whether auto mode counts ingress by native XDP here: not on veth, which turns off GSO on
    the peer while a native XDP program is attached (veth_fix_features), so the peer's TCP
    would segment in software: far costlier than counting with TC."""
    return driver_name(iface) != "veth"


def detach_xdp(iface: str, ifindex: int, prog_fd: int) -> None:
    """Remove our native XDP program, only if it is still the one there."""
    opts = libbpf.XdpAttachOpts(old_prog_fd=prog_fd)
    rc = libbpf.lib().bpf_xdp_detach(ifindex, XDP_MODES["native"], ctypes.byref(opts))
    if rc == -errno.EEXIST:
        log.warning("XDP on %s is no longer netmetrics' program; left it alone", iface)
    elif rc == -errno.ENODEV:
        log.info("%s is gone, and our XDP program with it", iface)
    else:
        libbpf.check(rc, f"detach XDP from {iface}")


def _tc_hook(ifindex: int, points: int) -> libbpf.TcHook:
    return libbpf.TcHook(ifindex=ifindex, attach_point=points)


def _tc_filter_prog_id(ifindex: int, side: str) -> int | None:
    """Program id of the filter at our handle and priority on `side`, None when there is none."""
    opts = libbpf.TcOpts(handle=TC_HANDLE, priority=TC_PRIORITY)
    hook = _tc_hook(ifindex, TC_SIDES[side])
    rc = libbpf.lib().bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
    if rc in (-errno.ENOENT, -errno.EINVAL, -errno.ENODEV):  # no filter, no clsact, no device
        return None
    libbpf.check(rc, f"query the {side} filter")
    return opts.prog_id


def tc_leftover(ifindex: int, side: str) -> int | None:
    """Program id of a netmetrics filter at our place on `side`, None if there is none of ours."""
    prog_id = _tc_filter_prog_id(ifindex, side)
    if prog_id is None or libbpf.prog_name(prog_id) != TC_FUNCTIONS[side]:
        return None
    return prog_id


class TcAttachment(NamedTuple):
    """What attach_tc did: detach_tc needs the program id; the qdisc is ours if we created it."""

    prog_id: int
    created_qdisc: bool


def attach_tc(iface: str, ifindex: int, side: str, prog_fd: int) -> TcAttachment:
    """Add our filter on `side` (clsact qdisc created if missing); replace a leftover of ours."""
    hook = _tc_hook(ifindex, TC_SIDES[side])
    rc = libbpf.lib().bpf_tc_hook_create(ctypes.byref(hook))
    if rc not in (0, -errno.EEXIST):
        raise PreflightError(f"cannot create a clsact qdisc on {iface}: {os.strerror(-rc)}")
    created = rc == 0
    flags = 0
    leftover_id = _tc_filter_prog_id(ifindex, side)
    if leftover_id is not None:
        name = libbpf.prog_name(leftover_id)
        if name != TC_FUNCTIONS[side]:
            raise PreflightError(
                f"the {side} filter at handle {TC_HANDLE:#x} priority {TC_PRIORITY} on {iface} "
                f"is another tool's ({name}, program id {leftover_id}); netmetrics needs that "
                f"place: remove it with `tc filter del dev {iface} {side} prio {TC_PRIORITY}` "
                "if unused"
            )
        log.warning(
            "replacing a netmetrics %s filter (program id %d) left on %s by a sampler that "
            "did not exit cleanly",
            side,
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
            f"cannot add the {side} filter on {iface} at priority {TC_PRIORITY}: "
            f"{os.strerror(-rc)} (a filter of another kind there is refused; see "
            f"`tc filter show dev {iface} {side}`)"
        )
    return TcAttachment(opts.prog_id, created)


def detach_tc(iface: str, ifindex: int, side: str, prog_id: int) -> None:
    """Remove our filter from `side` if the program there is still `prog_id`."""
    current = _tc_filter_prog_id(ifindex, side)
    if current is None:
        return
    if current != prog_id:
        log.warning("the %s filter on %s is no longer netmetrics'; left it alone", side, iface)
        return
    opts = libbpf.TcOpts(handle=TC_HANDLE, priority=TC_PRIORITY)
    hook = _tc_hook(ifindex, TC_SIDES[side])
    rc = libbpf.lib().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    libbpf.check(rc, f"remove the {side} filter from {iface}")


def _destroy_clsact(ifindex: int) -> int:
    """Delete the clsact qdisc (both sides: naming one side only would flush its filters)."""
    both = _tc_hook(ifindex, libbpf.BPF_TC_INGRESS | libbpf.BPF_TC_EGRESS)
    return libbpf.lib().bpf_tc_hook_destroy(ctypes.byref(both))


def _has_filters(iface: str) -> bool:
    """Whether the clsact qdisc still holds filters on either side (True when unsure)."""
    if shutil.which("tc") is None:
        return True
    for side in TC_SIDES:
        out = subprocess.run(
            ["tc", "-j", "filter", "show", "dev", iface, side],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0 or json.loads(out.stdout or "[]"):
            return True
    return False


def remove_clsact_if_empty(iface: str, ifindex: int) -> None:
    """Delete the clsact qdisc unless filters (anyone's) remain on either side."""
    if _has_filters(iface):
        return
    rc = _destroy_clsact(ifindex)
    if rc not in (0, -errno.ENOENT, -errno.EINVAL):
        libbpf.check(rc, f"remove the clsact qdisc from {iface}")
