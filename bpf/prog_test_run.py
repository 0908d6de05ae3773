"""Run a loaded BPF program on a frame in the kernel, without attaching it (BPF_PROG_TEST_RUN).

XDP programs get the frame as an xdp_buff, SCHED_CLS programs as an skb built from it; the frame
must be at least an Ethernet header long. Used by the tests and the cost benchmark.
"""

import ctypes

from bpf import libbpf

# The interface a test run's frame comes from: loopback, ifindex 1 in every network namespace.
# A program counts it only once Program.add_interface(TEST_RUN_IFINDEX) made its counters.
TEST_RUN_IFINDEX = 1


def prog_test_run(
    prog_fd: int, frame: bytes, repeat: int = 1, ctx: bytes | None = None
) -> tuple[int, int]:
    """Run the program `repeat` times on `frame`: (return value, mean duration in ns per run).

    `ctx` is an optional input context (struct __sk_buff for SCHED_CLS, e.g. to set gso_segs).
    The return value is the program's u32: TC_ACT_UNSPEC (-1) reads as 0xFFFFFFFF.
    """
    data = ctypes.create_string_buffer(frame, len(frame))
    opts = libbpf.TestRunOpts(
        data_in=ctypes.addressof(data), data_size_in=len(frame), repeat=repeat
    )
    if ctx is not None:
        ctx_buf = ctypes.create_string_buffer(ctx, len(ctx))
        opts.ctx_in = ctypes.addressof(ctx_buf)
        opts.ctx_size_in = len(ctx)
    libbpf.check(libbpf.lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "test run")
    return opts.retval, opts.duration
