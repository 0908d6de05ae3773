"""Emptying the kernel's flow table (bpf/flows.py has its layout): the sampler's side only.

The table is emptied at every harvest, so what a harvest returns is each flow's traffic since the
previous one, and the table holds only flows active within one interval. Entries the kernel made
but no harvest found were evicted by newer flows before they could be read: their traffic is lost
from the flows (never from the class counters), and `dropped` counts them, by interface.
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Callable, Mapping

from bpf import libbpf
from bpf.flows import KEY_SIZE, TUPLE_SIZE, FlowCounts, key_ifindex

# struct flow_counts: packets[RX], packets[TX], bytes[RX], bytes[TX]; one per possible CPU.
_FIELDS = 4
_COUNTS_SIZE = 8 * _FIELDS


class FlowTable:
    """Harvest the kernel's flow table: read and delete every entry, a batch syscall at a time.

    `created` returns the kernel's count of entries made so far, by ifindex, for the interfaces
    counted now. Each entry holds one set of counts per possible CPU, summed here. The buffers are
    allocated once, for a full table; a harvest does not allocate them again.
    """

    def __init__(self, map_fd: int, size: int, created: Callable[[], Mapping[int, int]]) -> None:
        self.size = size
        self._fd = map_fd
        self._created = created
        self._cpus = libbpf.num_possible_cpus()
        self._value_size = self._cpus * _COUNTS_SIZE
        self._keys = ctypes.create_string_buffer(size * KEY_SIZE)
        self._values = ctypes.create_string_buffer(size * self._value_size)
        self.harvested: dict[int, int] = {}  # entries read since the interface's entry was made
        self.dropped: dict[int, int] = {}  # entries evicted before a harvest read them, as well

    def harvest(self) -> dict[int, dict[bytes, FlowCounts]]:
        """Each interface's flows since the last harvest, by ifindex, then by the flow's key
        without the ifindex (decode_key names it). Flows of an interface no longer counted (left
        in the table when it was detached) are dropped."""
        # Read the counts first: an entry made after it and harvested now lowers the difference
        # until the next harvest, never raises it into a false drop.
        created = self._created()
        count = self._read_and_delete()
        keys = ctypes.string_at(self._keys, count * KEY_SIZE)
        values = array("Q", ctypes.string_at(self._values, count * self._value_size))
        width = self._cpus * _FIELDS  # u64s per entry
        flows: dict[int, dict[bytes, FlowCounts]] = {ifindex: {} for ifindex in created}
        for i in range(count):
            key = keys[i * KEY_SIZE : (i + 1) * KEY_SIZE]
            interface = flows.get(key_ifindex(key))
            if interface is None:
                continue
            # Field f of every CPU: a strided slice, summed in C.
            rx_p, tx_p, rx_b, tx_b = (
                sum(values[i * width + f : (i + 1) * width : _FIELDS]) for f in range(_FIELDS)
            )
            interface[key[:TUPLE_SIZE]] = FlowCounts(rx_p, rx_b, tx_p, tx_b)
        for ifindex, made in created.items():
            harvested = self.harvested.get(ifindex, 0) + len(flows[ifindex])
            self.harvested[ifindex] = harvested
            self.dropped[ifindex] = max(self.dropped.get(ifindex, 0), made - harvested)
        return flows

    def forget(self, ifindex: int) -> None:
        """Start the interface's counts afresh: its entry of `created` is new."""
        self.harvested.pop(ifindex, None)
        self.dropped.pop(ifindex, None)

    def resume(self, ifindex: int, dropped: int) -> None:
        """Go on from a previous sampler's counts for the interface: `dropped` entries so far;
        those in the table now are still to be harvested, and the rest of those made were."""
        made = self._created().get(ifindex, 0)
        count = libbpf.read_batch(self._fd, self._keys, self._values, KEY_SIZE, self._value_size)
        keys = ctypes.string_at(self._keys, count * KEY_SIZE)
        waiting = sum(
            key_ifindex(keys[i * KEY_SIZE : (i + 1) * KEY_SIZE]) == ifindex for i in range(count)
        )
        self.dropped[ifindex] = dropped
        self.harvested[ifindex] = made - dropped - waiting

    def _read_and_delete(self) -> int:
        return libbpf.read_batch(
            self._fd, self._keys, self._values, KEY_SIZE, self._value_size, delete=True
        )
