"""A per-CPU hash of the kernel programs keyed by ifindex, whose values are u64 fields: the
counters of bpf/netmetrics.c, its flows_created, the retransmits of bpf/tcp_health.c.

The loader makes an interface's entry (zero) before it attaches there, and deletes it after it
detached: the programs only look entries up, so a frame of an interface without one is not
counted. A read copies every entry in one batch syscall and sums each field over the CPUs.
"""

from __future__ import annotations

import ctypes
import errno
from array import array

from bpf import libbpf

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
            raise OSError(-rc, f"netmetrics counts at most {self.size} interfaces at once")
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
