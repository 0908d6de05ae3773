"""The Linux capabilities the sampler needs, and which of them this process lacks.

Root has them all. deploy/netmetrics-sampler.service gives exactly these to the unprivileged
user netmetrics (tests/test_service.py keeps the two lists equal), and preflight() names any
that is missing: without it, BCC says "Need super-user privileges to run" or the kernel a bare
EPERM, after seconds of compiling.
"""

from __future__ import annotations

from pathlib import Path

# name: (bit in <linux/capability.h>, what for). Found by running the sampler under setpriv as
# an unprivileged user and dropping one at a time (README "Running as a service").
NEEDED = {
    "CAP_BPF": (39, "to create maps and load programs"),
    "CAP_PERFMON": (38, "for the programs' pointer arithmetic on packets and perf events"),
    "CAP_NET_ADMIN": (12, "to attach XDP and TC programs to interfaces"),
    "CAP_DAC_READ_SEARCH": (
        2,
        "to reach its pins in /sys/fs/bpf and the TCP tracepoints' formats in tracefs (both "
        "root's only)",
    ),
}


def effective(status: Path = Path("/proc/self/status")) -> int:
    """This process's effective capability set, as a bit mask."""
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise OSError(f"no CapEff line in {status}")


def missing(mask: int | None = None) -> list[str]:
    """The needed capabilities not in `mask` (this process's effective set by default)."""
    mask = effective() if mask is None else mask
    return [name for name, (bit, _) in NEEDED.items() if not mask >> bit & 1]
