"""Compile and load the kernel programs, and pin them with their maps in a bpffs directory: the
job of a short-lived child process (`python -m bpf.build DIRECTORY BUILD_JSON`).

Why a child: BCC compiles with LLVM/clang, which stays mapped in any process that imports it
(about 200 MiB of RSS). The sampler runs this once, opens what it pinned by path through libbpf
(bpf/pins.py), and never imports BCC itself. Pinned objects also outlive the sampler, which is
what makes a restart lossless: the counters keep counting in between.

What it pins, by file name: the entry points `xdp`, `tc_ingress` and `tc_egress`; their maps
(`slots`, `counters`, `app_ports`, and with flows `flows` and `flows_created`); with TCP health
the tracepoint's maps (`local_addrs`, `retransmits`) and `retransmit_link`, a bpf_link that
keeps tcp_health.c attached to tcp:tcp_retransmit_skb with no process holding it; and two maps
of the sampler's own: `build` (the identity below, as JSON) and `tokens` (the run each slot of
counters belongs to: bpf/program.py).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpf import libbpf
from bpf.errors import PreflightError, bcc_bpf, loading

HERE = Path(__file__).parent
COUNTING_SOURCE = HERE / "netmetrics.c"
TCP_HEALTH_SOURCE = HERE / "tcp_health.c"
# The entry points, and the programs' names in the kernel (which keeps 15 characters: these fit)
# by which a leftover of a killed sampler is recognised.
XDP_FUNCTION = "netmetrics_xdp"
TC_FUNCTIONS = {"ingress": "netmetrics_tcin", "egress": "netmetrics_tc"}
RETRANSMIT_TRACEPOINT = ("tcp", "tcp_retransmit_skb")

# Interfaces one program counts at once (MAX_INTERFACES in netmetrics.c): its per-CPU counters
# take about 450 bytes per interface and CPU.
MAX_INTERFACES = 256
# The ifindexes the counters' slot array covers (MAX_IFINDEX in netmetrics.c: 256 KiB).
MAX_IFINDEX = 65536
BUILD_MAP_VALUE = 4096  # bytes of the `build` map's one value: the identity's JSON
# `tokens`: one u64 per slot of counters, and one more for the host total.
TOKENS = MAX_INTERFACES + 1


@dataclass(frozen=True)
class Build:
    """What a compilation depends on. Two starts with equal identities can share what the
    first pinned; any difference (an option, the sources, the kernel) means a new build."""

    app_ports: Mapping[str, tuple[int, ...]]
    flow_table: int
    tcp_health: bool

    @classmethod
    def of(cls, app_ports: Mapping[str, Iterable[int]], flow_table: int, tcp_health: bool) -> Build:
        return cls(
            {k: tuple(sorted(v)) for k, v in sorted(app_ports.items())}, flow_table, tcp_health
        )

    def identity(self) -> dict[str, Any]:
        """The build's options, a digest of its sources, and the kernel it was loaded into."""
        digest = hashlib.sha256()
        for path in (COUNTING_SOURCE, TCP_HEALTH_SOURCE, HERE / "classes.py", Path(__file__)):
            digest.update(path.read_bytes())
        return {
            "app_ports": {k: list(v) for k, v in self.app_ports.items()},
            "flow_table": self.flow_table,
            "tcp_health": self.tcp_health,
            "program": digest.hexdigest()[:16],
            "kernel": os.uname().release,
        }

    def to_json(self) -> str:
        """The options, for the child's command line (from_json reads them back)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Build:
        data = json.loads(text)
        return cls.of(data["app_ports"], data["flow_table"], data["tcp_health"])


def counting_cflags(flow_table: int) -> list[str]:
    """netmetrics.c's macros: the classes' bits from bpf/classes.py, the sizes, flows on/off."""
    from bpf.classes import CLASSES, TCP_FLAG_CLASSES
    from bpf.program import class_mask

    flags = [f"-DCLASS_{name.upper()}={index}" for index, name in enumerate(CLASSES)]
    flags.append(f"-DNUM_CLASSES={len(CLASSES)}")
    flags.append(f"-DMAX_INTERFACES={MAX_INTERFACES}")
    flags.append(f"-DMAX_IFINDEX={MAX_IFINDEX}")
    flags.append(f"-DTCP_FLAG_CLASSES={class_mask(TCP_FLAG_CLASSES):#x}U")
    if flow_table:
        flags += ["-DFLOWS", f"-DFLOW_TABLE_SIZE={flow_table}"]
    return flags


def pin_programs(build: Build, directory: Path) -> None:
    """Compile, load and pin everything `build` needs into `directory` (made here; it must not
    exist). Raises PreflightError (one line); BCC prints the compiler's details on stderr."""
    from bpf import tcp_health

    BPF = bcc_bpf()
    objects: dict[str, int] = {}
    with loading(COUNTING_SOURCE):
        counting = BPF(
            src_file=str(COUNTING_SOURCE).encode(), cflags=counting_cflags(build.flow_table)
        )
        objects["xdp"] = counting.load_func(XDP_FUNCTION.encode(), BPF.XDP).fd
        for side, name in TC_FUNCTIONS.items():
            objects[f"tc_{side}"] = counting.load_func(name.encode(), BPF.SCHED_CLS).fd
    maps = ["slots", "counters", "app_ports"] + (
        ["flows", "flows_created"] if build.flow_table else []
    )
    objects.update((name, counting[name.encode()].map_fd) for name in maps)
    if build.tcp_health:
        tcp_health.mount_tracefs()
        cflags = tcp_health.cflags()
        with loading(TCP_HEALTH_SOURCE):
            health = BPF(src_file=str(TCP_HEALTH_SOURCE).encode(), cflags=cflags)
        category, event = RETRANSMIT_TRACEPOINT
        # BCC attached the probe as it loaded it, through a perf event of this process that dies
        # with it: a bpf_link, pinned, keeps it attached instead.
        health.detach_tracepoint(f"{category}:{event}".encode())
        prog_fd = health.load_func(f"tracepoint__{category}__{event}".encode(), BPF.TRACEPOINT).fd
        objects["retransmit_link"] = tracepoint_link(prog_fd, category, event)
        objects.update(
            (name, health[name.encode()].map_fd) for name in ("local_addrs", "retransmits")
        )
    objects["tokens"] = libbpf.create_array("nm_tokens", 8, TOKENS)
    # Pinned last: a set whose identity reads back was pinned whole.
    objects["build"] = libbpf.create_array("nm_build", BUILD_MAP_VALUE, 1)
    identity = json.dumps(build.identity()).encode()
    value = ctypes.create_string_buffer(identity, BUILD_MAP_VALUE)
    libbpf.update(objects["build"], ctypes.c_uint32(0), value)
    directory.mkdir(mode=0o700)
    for name, fd in objects.items():
        libbpf.pin(fd, str(directory / name))


_PERF_TYPE_TRACEPOINT = 2
_PERF_ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5: the kernel zero-fills what a newer one adds
_PERF_FLAG_FD_CLOEXEC = 8
_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}


def tracepoint_link(prog_fd: int, category: str, event: str) -> int:
    """Attach a tracepoint program through a bpf_link (Linux 5.15+), which can be pinned; its
    fd. The perf event it rides on is closed here: the link holds it."""
    from bpf.tcp_health import TRACEFS

    tp_id = int((TRACEFS / "events" / category / event / "id").read_text())
    # struct perf_event_attr: type, size, config (the tracepoint), sample_period 1, then zeros.
    attr = ctypes.create_string_buffer(
        struct.pack("IIQQ", _PERF_TYPE_TRACEPOINT, _PERF_ATTR_SIZE, tp_id, 1), _PERF_ATTR_SIZE
    )
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = _PERF_EVENT_OPEN.get(os.uname().machine)
    if syscall is None:
        raise PreflightError(f"perf_event_open: unknown on {os.uname().machine}")
    # pid -1, cpu 0: a tracepoint's program runs on every CPU whichever CPU the event names.
    perf_fd = libc.syscall(syscall, attr, -1, 0, -1, _PERF_FLAG_FD_CLOEXEC)
    if perf_fd < 0:
        err = ctypes.get_errno()
        raise PreflightError(f"cannot open the {category}:{event} tracepoint: {os.strerror(err)}")
    try:
        rc = libbpf.lib().bpf_link_create(prog_fd, perf_fd, libbpf.BPF_PERF_EVENT, None)
        return libbpf.check(rc, f"attach to {category}:{event}")
    finally:
        os.close(perf_fd)


def main(argv: list[str]) -> int:
    """The child: exit 0 once everything is pinned; else the one-line error on stdout, exit 2."""
    directory, build = Path(argv[1]), Build.from_json(argv[2])
    try:
        pin_programs(build, directory)
    except (PreflightError, OSError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
