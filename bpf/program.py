"""The netmetrics programs and their maps, loaded (bpf/build.py) but not attached to anything.

One `Program` is one compilation of bpf/netmetrics.c, for every interface, opened from its pins
(bpf/pins.py): the three entry points (XDP ingress, TC ingress, TC egress: their file
descriptors are what gets attached to each interface, or test-run), the counters by interface,
the application port table, the flow table when flows are on (bpf/flow_table.py), and the
tokens that tie each interface's counters to its run in the database.
"""

import ctypes
from collections.abc import Iterable, Mapping

from bpf import libbpf
from bpf.build import MAX_IFINDEX, MAX_INTERFACES, TC_FUNCTIONS, XDP_FUNCTION, Build
from bpf.classes import (
    APP_PROTOCOLS,
    CLASSES,
    DIRECTIONS,
    counter_name,
)
from bpf.flow_table import FlowTable
from bpf.interface_table import InterfaceTable, SlotTable
from bpf.pins import Objects

__all__ = ["MAX_IFINDEX", "MAX_INTERFACES", "TC_FUNCTIONS", "XDP_FUNCTION", "Program"]

# Index base of each transport in the app_ports map (UDP_PORTS_BASE in netmetrics.c).
_PORTS_BASE = {"tcp": 0, "udp": 65536}


# Entries of the flow table unless told otherwise: about 1.6 MB of kernel memory.
DEFAULT_FLOW_TABLE = 16384
# struct iface_counters: packets[NUM_CLASSES] then bytes[NUM_CLASSES], for RX then TX.
_COUNTER_FIELDS = [
    counter_name(direction, cls, unit)
    for direction in DIRECTIONS
    for unit in ("packets", "bytes")
    for cls in CLASSES
]
# The host total's place in the tokens map, after the slots'.
TOTAL_TOKEN = MAX_INTERFACES


def class_mask(classes: Iterable[str]) -> int:
    """The kernel's bitmask of these classes: bit CLASS_<NAME> (the index in CLASSES) of each."""
    mask = 0
    for cls in classes:
        mask |= 1 << CLASSES.index(cls)
    return mask


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
    """The entry points' fds, and the counters of each interface by ifindex.

    `objects` is the set to use (what TrafficCounter loads); without it, a private set is built
    for this Program alone with `flow_table` entries (0: no flows, at no cost per packet), and
    close() unloads it. Raises PreflightError (one line) when the programs do not compile or
    load. The counters of interfaces that a kept set counted before this start are read back:
    has_interface() says which.
    """

    def __init__(
        self,
        app_ports: Mapping[str, Iterable[int]],
        flow_table: int = 0,
        objects: Objects | None = None,
    ) -> None:
        if flow_table < 0:
            raise ValueError(f"the flow table cannot have {flow_table} entries")
        self._owned = objects is None
        if objects is None:
            objects = Objects.private(Build.of(app_ports, flow_table, tcp_health=False))
        self.objects = objects
        self.xdp_fd: int = objects.fd("xdp")
        # TC program fds by side: ingress (skb mode) and egress.
        self.tc_fds: dict[str, int] = {side: objects.fd(f"tc_{side}") for side in TC_FUNCTIONS}
        # The kernel's ids of the three: what an interface's hooks report when they are ours.
        self.prog_ids = {
            "xdp": libbpf.prog_id(self.xdp_fd),
            **{side: libbpf.prog_id(fd) for side, fd in self.tc_fds.items()},
        }
        self._counters = SlotTable(
            objects.fd("slots"), objects.fd("counters"), MAX_INTERFACES, MAX_IFINDEX,
            len(_COUNTER_FIELDS),
        )  # fmt: skip
        self._tokens = objects.fd("tokens")
        self._ports = objects.fd("app_ports")
        self._port_masks: dict[int, int] = {}
        self.set_app_ports(app_ports)
        self.flows: FlowTable | None = None
        self._created: InterfaceTable | None = None
        if objects.has("flows"):
            created = self._created = InterfaceTable(objects.fd("flows_created"), MAX_INTERFACES, 1)
            self.flows = FlowTable(
                objects.fd("flows"),
                _entries(objects.fd("flows")),
                lambda: {ifindex: made for ifindex, (made,) in created.read().items()},
            )

    def set_app_ports(self, app_ports: Mapping[str, Iterable[int]]) -> None:
        """Make exactly these ports count as their application classes (takes effect at once)."""
        masks = app_port_masks(app_ports)
        for index in self._port_masks.keys() - masks.keys():
            libbpf.update(self._ports, ctypes.c_uint32(index), ctypes.c_uint32(0))
        for index, mask in masks.items():
            libbpf.update(self._ports, ctypes.c_uint32(index), ctypes.c_uint32(mask))
        self._port_masks = masks

    def has_interface(self, ifindex: int) -> bool:
        """Whether the interface has counters (it may have had them since before this start)."""
        return self._counters.has(ifindex)

    def interfaces(self) -> list[int]:
        return self._counters.ifindexes()

    def add_interface(self, ifindex: int) -> None:
        """Count the interface's frames from now, from zero (before attaching to it)."""
        self._counters.add(ifindex)
        self.set_token(ifindex, 0)
        if self._created is not None:
            self._created.add(ifindex)
        if self.flows is not None:
            self.flows.forget(ifindex)

    def remove_interface(self, ifindex: int) -> None:
        """Stop counting the interface (after detaching from it); its counters are gone."""
        if self._counters.has(ifindex):
            self.set_token(ifindex, 0)
        self._counters.remove(ifindex)
        if self._created is not None:
            self._created.remove(ifindex)
        if self.flows is not None:
            self.flows.forget(ifindex)

    def token(self, ifindex: int | None) -> int:
        """The token set for the interface's counters (None: the host total's); 0 if none."""
        value = ctypes.c_uint64()
        libbpf.lookup(self._tokens, ctypes.c_uint32(self._token_index(ifindex)), value)
        return value.value

    def set_token(self, ifindex: int | None, token: int) -> None:
        """Tie the interface's counters (None: the host total) to a run, by its kernel_token."""
        libbpf.update(
            self._tokens, ctypes.c_uint32(self._token_index(ifindex)), ctypes.c_uint64(token)
        )

    def _token_index(self, ifindex: int | None) -> int:
        return TOTAL_TOKEN if ifindex is None else self._counters.slot(ifindex)

    def read(self) -> dict[int, dict[str, int]]:
        """Each counted interface's counters since add_interface, summed over CPUs, by ifindex,
        then keyed by COUNTER_NAMES."""
        return {
            ifindex: dict(zip(_COUNTER_FIELDS, values, strict=True))
            for ifindex, values in self._counters.read().items()
        }

    def close(self) -> None:
        """Close a private set (whatever is still attached keeps running); a given set is its
        owner's to close."""
        if self._owned:
            self.objects.close()


def _entries(map_fd: int) -> int:
    """A map's max_entries, from the kernel's bpf_map_info."""
    info = (ctypes.c_uint32 * 20)()  # type, id, key_size, value_size, max_entries, ...
    size = ctypes.c_uint32(ctypes.sizeof(info))
    libbpf.check(libbpf.lib().bpf_obj_get_info_by_fd(map_fd, info, ctypes.byref(size)), "map info")
    return info[4]
