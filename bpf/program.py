"""The compiled netmetrics programs and their maps, loaded but not attached to anything.

One `Program` is one BCC compilation of bpf/netmetrics.c: the three entry points (XDP ingress, TC
ingress, TC egress: their file descriptors are what gets attached, or test-run), the counters, the
application port table, and the flow table when flows are on (bpf/flow_table.py).
"""

import ctypes
from collections.abc import Iterable, Mapping
from pathlib import Path

from bpf.classes import (
    APP_PROTOCOLS,
    CLASSES,
    COUNTER_NAMES,
    DIRECTIONS,
    TCP_FLAG_CLASSES,
    counter_name,
)
from bpf.errors import bcc_bpf, loading
from bpf.flow_table import FlowTable

SOURCE = Path(__file__).with_name("netmetrics.c")
# The entry points, and the programs' names in the kernel (which keeps 15 characters: these fit)
# by which a leftover of a killed sampler is recognised.
XDP_FUNCTION = "netmetrics_xdp"
TC_FUNCTIONS = {"ingress": "netmetrics_tcin", "egress": "netmetrics_tc"}

# Index base of each transport in the app_ports map (UDP_PORTS_BASE in netmetrics.c).
_PORTS_BASE = {"tcp": 0, "udp": 65536}


# Entries of the flow table unless told otherwise: about 1.6 MB of kernel memory.
DEFAULT_FLOW_TABLE = 16384


def class_mask(classes: Iterable[str]) -> int:
    """The kernel's bitmask of these classes: bit CLASS_<NAME> (the index in CLASSES) of each."""
    mask = 0
    for cls in classes:
        mask |= 1 << CLASSES.index(cls)
    return mask


def _cflags(flow_table: int) -> list[str]:
    flags = [f"-DCLASS_{name.upper()}={index}" for index, name in enumerate(CLASSES)]
    flags.append(f"-DNUM_CLASSES={len(CLASSES)}")
    flags.append(f"-DTCP_FLAG_CLASSES={class_mask(TCP_FLAG_CLASSES):#x}U")
    if flow_table:
        flags += ["-DFLOWS", f"-DFLOW_TABLE_SIZE={flow_table}"]
    return flags


def app_port_masks(app_ports: Mapping[str, Iterable[int]]) -> dict[int, int]:
    """app_ports map entries: index (transport base + port) -> mask of application classes."""
    masks: dict[int, int] = {}
    for cls, ports in app_ports.items():
        if cls not in APP_PROTOCOLS:
            raise ValueError(f"{cls!r} is not an application class ({', '.join(APP_PROTOCOLS)})")
        for port in ports:
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} of {cls} is not in 0-65535")
            for transport in APP_PROTOCOLS[cls]:
                index = _PORTS_BASE[transport] + port
                masks[index] = masks.get(index, 0) | class_mask([cls])
    return masks


class Program:
    """Compile and load the entry points once; read and reset their counters.

    `flow_table` is the number of entries of the flow table; 0 compiles the programs without
    flows, at no cost per packet. Raises PreflightError (one line) when BCC is missing or the
    program does not compile or load; BCC itself prints the compiler's and the verifier's
    details on stderr before that.
    """

    def __init__(self, app_ports: Mapping[str, Iterable[int]], flow_table: int = 0) -> None:
        if flow_table < 0:
            raise ValueError(f"the flow table cannot have {flow_table} entries")
        BPF = bcc_bpf()
        with loading(SOURCE):
            self._bpf = BPF(src_file=str(SOURCE).encode(), cflags=_cflags(flow_table))
            self.xdp_fd: int = self._bpf.load_func(XDP_FUNCTION.encode(), BPF.XDP).fd
            # TC program fds by side: ingress (skb mode) and egress.
            self.tc_fds: dict[str, int] = {
                side: self._bpf.load_func(name.encode(), BPF.SCHED_CLS).fd
                for side, name in TC_FUNCTIONS.items()
            }
        self._counters = self._bpf[b"counters"]
        self._ports = self._bpf[b"app_ports"]
        self._port_masks: dict[int, int] = {}
        self.set_app_ports(app_ports)
        self.flows: FlowTable | None = None
        if flow_table:
            created = self._bpf[b"flows_created"]
            self.flows = FlowTable(
                self._bpf[b"flows"].map_fd,
                flow_table,
                lambda: sum(created[ctypes.c_int(0)]),  # BCC's own .sum() is 10x slower
            )

    def set_app_ports(self, app_ports: Mapping[str, Iterable[int]]) -> None:
        """Make exactly these ports count as their application classes (takes effect at once)."""
        masks = app_port_masks(app_ports)
        for index in self._port_masks.keys() - masks.keys():
            self._ports[ctypes.c_int(index)] = ctypes.c_uint32(0)
        for index, mask in masks.items():
            self._ports[ctypes.c_int(index)] = ctypes.c_uint32(mask)
        self._port_masks = masks

    def reset(self) -> None:
        """Zero every counter, on every CPU, and empty the flow table."""
        for key in range(len(DIRECTIONS)):
            self._counters.clearitem(ctypes.c_int(key))
        if self.flows is not None:
            self.flows.reset()

    def read(self) -> dict[str, int]:
        """Counters since load or the last reset, summed over CPUs, keyed by COUNTER_NAMES."""
        counts = dict.fromkeys(COUNTER_NAMES, 0)
        for key, direction in enumerate(DIRECTIONS):
            for cpu_value in self._counters[ctypes.c_int(key)]:
                for index, cls in enumerate(CLASSES):
                    counts[counter_name(direction, cls, "packets")] += cpu_value.packets[index]
                    counts[counter_name(direction, cls, "bytes")] += cpu_value.bytes[index]
        return counts

    def close(self) -> None:
        """Unload: close the programs and maps (whatever is still attached keeps running)."""
        self._bpf.cleanup()
