"""The kernel programs' per-CPU maps by interface, whose values are u64 fields: a per-CPU hash
keyed by ifindex (InterfaceTable: netmetrics.c's flows_created, tcp_health.c's retransmits),
and the counters' slots (SlotTable: a slot array by ifindex into a per-CPU array, cheaper per
frame than a hash).

The loader makes an interface's entry (zero) before it attaches there, and deletes it after it
detached: the programs only look entries up, so a frame of an interface without one is not
counted. A read sums each field over the CPUs.
"""

from __future__ import annotations

import ctypes
import errno
from array import array

from bpf import libbpf
from bpf.errors import PreflightError

_KEY = ctypes.c_uint32
_KEY_SIZE = ctypes.sizeof(_KEY)


class InterfaceTable:
    """`fields` u64s per interface and CPU, in a map of at most `size` interfaces."""

    def __init__(self, map_fd: int, size: int, fields: int) -> None:
        self.fd = map_fd
        self.size = size
        self.fields = fields
        self._cpus = libbpf.num_possible_cpus()
        self._value_size = 8 * fields  # per CPU; all-u64 values need no padding
        self._zero = ctypes.create_string_buffer(self._cpus * self._value_size)
        self._keys = ctypes.create_string_buffer(size * _KEY_SIZE)
        self._values = ctypes.create_string_buffer(size * self._cpus * self._value_size)

    def add(self, ifindex: int) -> None:
        """A zero entry for the interface, replacing any it had: it counts from now."""
        rc = libbpf.lib().bpf_map_update_elem(self.fd, ctypes.byref(_KEY(ifindex)), self._zero, 0)
        if rc == -errno.E2BIG:
            raise PreflightError(f"netmetrics counts at most {self.size} interfaces at once")
        libbpf.check(rc, f"add interface {ifindex} to a map")

    def remove(self, ifindex: int) -> None:
        """Forget the interface (nothing if it has no entry)."""
        rc = libbpf.lib().bpf_map_delete_elem(self.fd, ctypes.byref(_KEY(ifindex)))
        if rc != -errno.ENOENT:
            libbpf.check(rc, f"remove interface {ifindex} from a map")

    def read(self) -> dict[int, list[int]]:
        """Every interface's fields, each summed over the CPUs."""
        count = libbpf.read_batch(
            self.fd, self._keys, self._values, _KEY_SIZE, self._cpus * self._value_size
        )
        keys = array("I", ctypes.string_at(self._keys, count * _KEY_SIZE))
        values = array("Q", ctypes.string_at(self._values, count * self._cpus * self._value_size))
        width = self._cpus * self.fields  # u64s per entry
        return {
            # Field f of every CPU: a strided slice, summed in C.
            ifindex: [
                sum(values[i * width + f : (i + 1) * width : self.fields])
                for f in range(self.fields)
            ]
            for i, ifindex in enumerate(keys)
        }


class SlotTable:
    """`fields` u64s per interface and CPU in a per-CPU array of `size` slots, and the array
    `slots_fd` that maps an ifindex (below `max_ifindex`) to its slot + 1 (0: not counted)."""

    def __init__(
        self, slots_fd: int, values_fd: int, size: int, max_ifindex: int, fields: int
    ) -> None:
        self._slots_fd = slots_fd
        self._values_fd = values_fd
        self.size = size
        self.max_ifindex = max_ifindex
        self.fields = fields
        self._cpus = libbpf.num_possible_cpus()
        self._zero = ctypes.create_string_buffer(self._cpus * 8 * fields)
        self._value = ctypes.create_string_buffer(self._cpus * 8 * fields)
        self._slot_of = self._read_slots()  # ifindex -> slot

    def _read_slots(self) -> dict[int, int]:
        """The slots given out before: a kept set's, from its last sampler."""
        keys = ctypes.create_string_buffer(self.max_ifindex * _KEY_SIZE)
        values = ctypes.create_string_buffer(self.max_ifindex * _KEY_SIZE)
        count = libbpf.read_batch(self._slots_fd, keys, values, _KEY_SIZE, _KEY_SIZE)
        ifindexes = array("I", ctypes.string_at(keys, count * _KEY_SIZE))
        slots = array("I", ctypes.string_at(values, count * _KEY_SIZE))
        return {ifindex: slot - 1 for ifindex, slot in zip(ifindexes, slots, strict=True) if slot}

    def has(self, ifindex: int) -> bool:
        return ifindex in self._slot_of

    def slot(self, ifindex: int) -> int:
        return self._slot_of[ifindex]

    def ifindexes(self) -> list[int]:
        return list(self._slot_of)

    def _set_slot(self, ifindex: int, value: int) -> None:
        key, slot = _KEY(ifindex), ctypes.c_uint32(value)
        rc = libbpf.lib().bpf_map_update_elem(
            self._slots_fd, ctypes.byref(key), ctypes.byref(slot), 0
        )
        libbpf.check(rc, f"set the counters' slot of interface {ifindex}")

    def add(self, ifindex: int) -> None:
        """A zeroed slot for the interface (its own if it has one): it counts from now."""
        if ifindex >= self.max_ifindex:
            raise OSError(
                0,
                f"netmetrics counts interfaces of ifindex below {self.max_ifindex}, not {ifindex}",
            )
        slot = self._slot_of.get(ifindex)
        if slot is None:
            free = set(range(self.size)) - set(self._slot_of.values())
            if not free:
                raise PreflightError(f"netmetrics counts at most {self.size} interfaces at once")
            slot = min(free)
        self._set_slot(ifindex, 0)  # no frame counts into the slot while it is zeroed
        rc = libbpf.lib().bpf_map_update_elem(
            self._values_fd, ctypes.byref(_KEY(slot)), self._zero, 0
        )
        libbpf.check(rc, f"zero the counters of interface {ifindex}")
        self._set_slot(ifindex, slot + 1)
        self._slot_of[ifindex] = slot

    def remove(self, ifindex: int) -> None:
        """Stop counting the interface and free its slot (nothing if it has none)."""
        if self._slot_of.pop(ifindex, None) is not None:
            self._set_slot(ifindex, 0)

    def read(self) -> dict[int, list[int]]:
        """Every counted interface's fields, each summed over the CPUs."""
        values = {}
        for ifindex, slot in self._slot_of.items():
            rc = libbpf.lib().bpf_map_lookup_elem(
                self._values_fd, ctypes.byref(_KEY(slot)), self._value
            )
            libbpf.check(rc, f"read the counters of interface {ifindex}")
            cpu_values = array("Q", self._value.raw)
            values[ifindex] = [sum(cpu_values[f :: self.fields]) for f in range(self.fields)]
        return values
