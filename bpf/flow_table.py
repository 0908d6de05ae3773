"""Emptying the kernel's flow table (bpf/flows.py has its layout): the sampler's side only.

The table is emptied at every harvest, so what a harvest returns is each flow's traffic since the
previous one, and the table holds only flows active within one interval. Entries the kernel made
but no harvest found were evicted by newer flows before they could be read: their traffic is lost
from the flows (never from the class counters), and `dropped` counts them.
"""

from __future__ import annotations

import ctypes
import errno
from array import array
from collections.abc import Callable

from bpf import libbpf
from bpf.flows import KEY_SIZE, FlowCounts

# struct flow_counts: packets[RX], packets[TX], bytes[RX], bytes[TX]; one per possible CPU.
_FIELDS = 4
_COUNTS_SIZE = 8 * _FIELDS


class FlowTable:
    """Harvest the kernel's flow table: read and delete every entry, a batch syscall at a time.

    `created` returns the kernel's count of entries made so far. Each entry holds one set of
    counts per possible CPU, summed here. The buffers are allocated once, for a full table; a
    harvest does not allocate them again.
    """

    def __init__(self, map_fd: int, size: int, created: Callable[[], int]) -> None:
        self.size = size
        self._fd = map_fd
        self._created = created
        self._cpus = libbpf.check(libbpf.lib().libbpf_num_possible_cpus(), "possible CPUs")
        self._value_size = self._cpus * _COUNTS_SIZE
        self._keys = ctypes.create_string_buffer(size * KEY_SIZE)
        self._values = ctypes.create_string_buffer(size * self._value_size)
        self.harvested = 0  # entries read since load
        self.dropped = 0  # entries evicted before a harvest read them, since load

    def harvest(self) -> dict[bytes, FlowCounts]:
        """Each flow's traffic since the last harvest, by raw key (decode_key names it)."""
        # Read the count first: an entry made after it and harvested now lowers the difference
        # until the next harvest, never raises it into a false drop.
        created = self._created()
        count = self._read_and_delete()
        self.harvested += count
        self.dropped = max(self.dropped, created - self.harvested)
        keys = ctypes.string_at(self._keys, count * KEY_SIZE)
        values = array("Q", ctypes.string_at(self._values, count * self._value_size))
        width = self._cpus * _FIELDS  # u64s per entry
        flows = {}
        for i in range(count):
            # Field f of every CPU: a strided slice, summed in C.
            rx_p, tx_p, rx_b, tx_b = (
                sum(values[i * width + f : (i + 1) * width : _FIELDS]) for f in range(_FIELDS)
            )
            flows[keys[i * KEY_SIZE : (i + 1) * KEY_SIZE]] = FlowCounts(rx_p, rx_b, tx_p, tx_b)
        return flows

    def reset(self) -> None:
        """Empty the table and start counting drops from zero."""
        self._read_and_delete()
        self.harvested = self._created()
        self.dropped = 0

    def _read_and_delete(self) -> int:
        """Move entries into the buffers until the table is empty or they are full."""
        batch = libbpf.lib().bpf_map_lookup_and_delete_batch
        token = ctypes.c_uint32()  # where the kernel's walk of the buckets stopped
        total = 0
        while total < self.size:
            count = ctypes.c_uint32(self.size - total)
            rc = batch(
                self._fd,
                ctypes.byref(token) if total else None,
                ctypes.byref(token),
                ctypes.addressof(self._keys) + total * KEY_SIZE,
                ctypes.addressof(self._values) + total * self._value_size,
                ctypes.byref(count),
                None,
            )
            total += count.value
            # ENOENT: every bucket walked. ENOSPC: the next bucket does not fit what is left of
            # the buffers, and no progress: either way the rest waits for the next harvest.
            if rc in (-errno.ENOENT, -errno.ENOSPC) or (rc == 0 and count.value == 0):
                break
            libbpf.check(rc, "reading the flow table")
        return total
