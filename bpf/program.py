"""The compiled netmetrics programs and their maps, loaded but not attached to anything.

One `Program` is one BCC compilation of bpf/netmetrics.c, for every interface: the three entry
points (XDP ingress, TC ingress, TC egress: their file descriptors are what gets attached to each
interface, or test-run), the counters by interface, the application port table, and the flow
table when flows are on (bpf/flow_table.py).
"""

import ctypes
from collections.abc import Iterable, Mapping
from pathlib import Path

from bpf.classes import (
    APP_PROTOCOLS,
    CLASSES,
    DIRECTIONS,
    TCP_FLAG_CLASSES,
    counter_name,
)
from bpf.errors import bcc_bpf, loading
from bpf.flow_table import FlowTable
from bpf.interface_table import InterfaceTable, SlotTable

SOURCE = Path(__file__).with_name("netmetrics.c")
# The entry points, and the programs' names in the kernel (which keeps 15 characters: these fit)
# by which a leftover of a killed sampler is recognised.
XDP_FUNCTION = "netmetrics_xdp"
TC_FUNCTIONS = {"ingress": "netmetrics_tcin", "egress": "netmetrics_tc"}

# Index base of each transport in the app_ports map (UDP_PORTS_BASE in netmetrics.c).
_PORTS_BASE = {"tcp": 0, "udp": 65536}


# Entries of the flow table unless told otherwise: about 1.6 MB of kernel memory.
DEFAULT_FLOW_TABLE = 16384
# Interfaces one program counts at once (MAX_INTERFACES in netmetrics.c): its per-CPU counters
# take about 450 bytes per interface and CPU.
MAX_INTERFACES = 256
# The ifindexes the counters' slot array covers (MAX_IFINDEX in netmetrics.c: 256 KiB).
MAX_IFINDEX = 65536
# struct iface_counters: packets[NUM_CLASSES] then bytes[NUM_CLASSES], for RX then TX.
_COUNTER_FIELDS = [
    counter_name(direction, cls, unit)
    for direction in DIRECTIONS
    for unit in ("packets", "bytes")
    for cls in CLASSES
]


def class_mask(classes: Iterable[str]) -> int:
    """The kernel's bitmask of these classes: bit CLASS_<NAME> (the index in CLASSES) of each."""
    mask = 0
    for cls in classes:
        mask |= 1 << CLASSES.index(cls)
    return mask


def _cflags(flow_table: int) -> list[str]:
    flags = [f"-DCLASS_{name.upper()}={index}" for index, name in enumerate(CLASSES)]
    flags.append(f"-DNUM_CLASSES={len(CLASSES)}")
    flags.append(f"-DMAX_INTERFACES={MAX_INTERFACES}")
    flags.append(f"-DMAX_IFINDEX={MAX_IFINDEX}")
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
    """Compile and load the entry points once; count interfaces, read their counters.

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
        self._counters = SlotTable(
            self._bpf[b"slots"].map_fd,
            self._bpf[b"counters"].map_fd,
            MAX_INTERFACES,
            MAX_IFINDEX,
            len(_COUNTER_FIELDS),
        )
        self._ports = self._bpf[b"app_ports"]
        self._port_masks: dict[int, int] = {}
        self.set_app_ports(app_ports)
        self.flows: FlowTable | None = None
        self._created: InterfaceTable | None = None
        if flow_table:
            created = self._created = self._table(b"flows_created", 1)
            self.flows = FlowTable(
                self._bpf[b"flows"].map_fd,
                flow_table,
                lambda: {ifindex: made for ifindex, (made,) in created.read().items()},
            )

    def _table(self, name: bytes, fields: int) -> InterfaceTable:
        return InterfaceTable(self._bpf[name].map_fd, MAX_INTERFACES, fields)

    def set_app_ports(self, app_ports: Mapping[str, Iterable[int]]) -> None:
        """Make exactly these ports count as their application classes (takes effect at once)."""
        masks = app_port_masks(app_ports)
        for index in self._port_masks.keys() - masks.keys():
            self._ports[ctypes.c_int(index)] = ctypes.c_uint32(0)
        for index, mask in masks.items():
            self._ports[ctypes.c_int(index)] = ctypes.c_uint32(mask)
        self._port_masks = masks

    def add_interface(self, ifindex: int) -> None:
        """Count the interface's frames from now, from zero (before attaching to it)."""
        self._counters.add(ifindex)
        if self._created is not None:
            self._created.add(ifindex)
        if self.flows is not None:
            self.flows.forget(ifindex)

    def remove_interface(self, ifindex: int) -> None:
        """Stop counting the interface (after detaching from it); its counters are gone."""
        self._counters.remove(ifindex)
        if self._created is not None:
            self._created.remove(ifindex)
        if self.flows is not None:
            self.flows.forget(ifindex)

    def read(self) -> dict[int, dict[str, int]]:
        """Each counted interface's counters since add_interface, summed over CPUs, by ifindex,
        then keyed by COUNTER_NAMES."""
        return {
            ifindex: dict(zip(_COUNTER_FIELDS, values, strict=True))
            for ifindex, values in self._counters.read().items()
        }

    def close(self) -> None:
        """Unload: close the programs and maps (whatever is still attached keeps running)."""
        self._bpf.cleanup()
