"""What the benches share: a migrated scratch database, the sampler as a subprocess, /proc readings.

    with scratch_env() as env, bench_pair() as pair:
        sampler = SamplerProcess.start(env, pair.host_iface, logdir / "sampler.log")
        ...                                 # its programs are attached, its first sample is in
        run = sampler.stop()                # SIGTERM; raises BenchError unless it exited 0

bench_pairs(n) makes n more pairs; SamplerProcess.start takes several names comma-separated
(`--iface a,b`), and then speaks of its host total.

The API benches (bench/api, bench/fleet) share the query set (api_queries), the timed keep-alive
client (ApiClient), the interleaved timing (time_queries) and its side-by-side table
(latency_table).

Everything here runs as root from a checkout (the API benches need no root); the scripts put
the repo root on sys.path.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from metrics.selection import HOST_TOTAL, Selection
from tests.netns import VethPair, veth_pair
from tests.processes import Managed, ProcessFailed, migrated_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
# Below the tests' 10.213-10.255 (10.{213 + index}.{pid % 200}): a bench and the test suite can
# run side by side. bench_pair() takes 10.102.{pid % 200}, so that two benches running at once
# (overhead beside sampler_cpu, say) do not both route one /30, which sent one's traffic into
# the other's pair; bench_pairs() takes 10.100.1 on.
PAIR_SUBNET = "10.102"
MAX_PAIRS = 250  # bench_pairs: 10.100.1 .. 10.101.50; the kernel side counts 256 at once

T = TypeVar("T")


class BenchError(Exception):
    """A failure of the bench itself (not a missed target): one line, then exit 1."""


def main_guard(main: Callable[[], int]) -> None:
    """Run `main` with SIGTERM turned into KeyboardInterrupt, so cleanup runs on both signals."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        code = main()
    except (BenchError, ProcessFailed, TimeoutError) as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted; cleaned up", file=sys.stderr)
        code = 130
    sys.exit(code)


def require(**packages: str) -> None:
    """Fail early, in one line, without root or without a command (`command=package`)."""
    if os.geteuid() != 0:
        raise BenchError("needs root (veth pair, network namespace, eBPF): run it with sudo")
    missing = [pkg for cmd, pkg in {"ip": "iproute2", **packages}.items() if not shutil.which(cmd)]
    if missing:
        raise BenchError(f"missing commands: apt-get install -y {' '.join(missing)}")


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """--mode and --sampler-option: how the benches start runsampler (args.sampler_args())."""
    parser.add_argument(
        "--mode", choices=["auto", "native", "skb"], default="auto", help="runsampler's --mode"
    )
    parser.add_argument(
        "--sampler-option",
        action="append",
        default=[],
        help="one more runsampler option, e.g. --sampler-option=--no-flows (repeatable)",
    )


def sampler_args(args: argparse.Namespace) -> list[str]:
    """The runsampler options add_sampler_arguments parsed."""
    return ["--mode", args.mode, *args.sampler_option]


def bench_pair() -> contextlib.AbstractContextManager[VethPair]:
    """The tests' veth pair into a namespace, on a subnet of this process's; removed on exit."""
    return veth_pair(subnet=f"{PAIR_SUBNET}.{os.getpid() % 200}")


@contextlib.contextmanager
def bench_pairs(count: int) -> Iterator[list[VethPair]]:
    """`count` more pairs (indexes 1..count: host ends nmh<pid>x<index>), a subnet each from
    10.100.1; all removed on exit. veth_pair takes about 30 ms a pair here: no batching."""
    if not 1 <= count <= MAX_PAIRS:
        raise BenchError(f"at most {MAX_PAIRS} pairs")
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(veth_pair(subnet=f"10.{100 + i // 200}.{i % 200}", index=i))
            for i in range(1, count + 1)
        ]


EMPTY_SOURCE = Path(__file__).with_name("empty.c")


@contextlib.contextmanager
def empty_programs(pair: VethPair, native: bool) -> Iterator[None]:
    """EMPTY_SOURCE's programs on the hooks the sampler uses on the host end: TC egress, and
    ingress by native XDP (`native`) or by TC. What they cost is the floor of any in-kernel
    monitor on those hooks."""
    from bcc import BPF

    from bpf.attach import (
        attach_native_xdp,
        attach_tc,
        detach_tc,
        detach_xdp,
        remove_clsact_if_empty,
    )

    iface = pair.host_iface
    ifindex = socket.if_nametoindex(iface)
    bpf = BPF(src_file=str(EMPTY_SOURCE).encode())
    tc_fd = bpf.load_func(b"tc_unspec", BPF.SCHED_CLS).fd
    sides = ["egress"]
    xdp_fd = bpf.load_func(b"xdp_pass", BPF.XDP).fd if native else None
    if xdp_fd is None:
        sides.append("ingress")
    elif not attach_native_xdp(iface, ifindex, xdp_fd, "native"):
        raise BenchError(f"native XDP refused on {iface}")
    attached = {side: attach_tc(iface, ifindex, side, tc_fd).prog_id for side in sides}
    try:
        yield
    finally:
        for side, prog_id in attached.items():
            detach_tc(iface, ifindex, side, prog_id)
        remove_clsact_if_empty(iface, ifindex)
        if xdp_fd is not None:
            detach_xdp(iface, ifindex, xdp_fd)
        bpf.cleanup()


@contextlib.contextmanager
def scratch_env() -> Iterator[dict[str, str]]:
    """A child environment whose NETMETRICS_DB is a freshly migrated temporary SQLite file."""
    with tempfile.TemporaryDirectory(prefix="netmetrics-bench-") as tmp:
        yield migrated_env(Path(tmp) / "bench.sqlite3", sqlite=True)


@dataclass
class SamplerProcess:
    """`manage.py runsampler` on interfaces, started and known to be sampling."""

    managed: Managed
    env: dict[str, str]
    mode: str  # the mode it got: native (XDP) or skb (TC ingress)
    speaking: str  # the run stop() returns: the host total's with several names, else the one

    @classmethod
    def start(
        cls, env: dict[str, str], iface: str, log: Path, *extra: str, timeout: float = 90
    ) -> SamplerProcess:
        """Start it on `iface` (names, comma-separated) and return once its first sample is
        written (BCC's compile is behind us; with several names, every interface is attached)."""
        several = Selection.parse(iface, False, None).several
        speaking = HOST_TOTAL if several else iface
        managed = Managed(env, log, "runsampler", "--iface", iface, *extra)
        try:

            def first_sample() -> str:
                managed.ensure_running()
                run = cls._run_row(env, managed.pid, speaking, "last_sample_id")
                if not run or run["last_sample_id"] is None:
                    return ""
                # The total's mode is "host": take the interfaces' (the last one attached).
                attached = cls._run_row(env, managed.pid, None, "mode")
                return attached["mode"] if attached else ""

            mode = wait_for(first_sample, timeout, "the sampler's first sample")
        except BaseException:
            managed.stop()
            raise
        return cls(managed, env, mode, speaking)

    @property
    def pid(self) -> int:
        return self.managed.pid

    def stop(self) -> dict[str, Any]:
        """SIGTERM it; BenchError unless it exits 0. Returns its SamplerRun row (totals)."""
        code = self.managed.stop()
        if code != 0:
            raise BenchError(f"runsampler exited {code} on SIGTERM: {self.managed.output()[-800:]}")
        totals = [f"{d}_total_{u}" for d in ("rx", "tx") for u in ("packets", "bytes")]
        columns = ("stopped_at", "rx_udp_packets", *totals)
        run = self._run_row(self.env, self.pid, self.speaking, *columns)
        if run is None or run["stopped_at"] is None:
            raise BenchError("runsampler exited 0 but did not mark its run stopped")
        return run

    @staticmethod
    def _run_row(
        env: dict[str, str], pid: int, interface: str | None, *columns: str
    ) -> dict[str, Any] | None:
        """The pid's last run of `interface` (None: of any interface but the total)."""
        where = "interface = ?" if interface else "interface != ?"
        with contextlib.closing(sqlite3.connect(env["NETMETRICS_DB"], timeout=5)) as db:
            row = db.execute(
                f"SELECT {', '.join(columns)} FROM metrics_samplerrun WHERE pid = ? AND {where} "
                "ORDER BY id DESC LIMIT 1",
                (pid, interface or HOST_TOTAL),
            ).fetchone()
        return dict(zip(columns, row, strict=True)) if row else None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of the sorted values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


Query = Callable[[str | None], str]  # a request's path, given the ?host= to ask about (or none)


def api_queries(iface: str, until: datetime | None = None) -> dict[str, Query]:
    """The API benches' query set by label. History ranges end at `until` (sent as until=), else
    at each request's now (no until=); summaries' windows end at now."""

    def path(endpoint: str, host: str | None, **params: str) -> str:
        return f"/api/{endpoint}?" + urlencode(
            {**({"host": host} if host else {}), "iface": iface, **params}
        )

    def history(host: str | None, ago: timedelta, **params: str) -> str:
        end = until or datetime.now(UTC)
        bounds = {"since": _iso(end - ago), **({"until": _iso(until)} if until else {})}
        return path("metrics/history", host, **bounds, **params)

    hour, day = timedelta(hours=1), timedelta(hours=24)
    return {
        "realtime": lambda host: path("metrics/realtime", host),
        "summary window=24h": lambda host: path("stats/summary", host, window="24h"),
        "summary window=30d": lambda host: path("stats/summary", host, window="30d"),
        "history 24h step=auto": lambda host: history(host, day, step="auto"),
        "history 1h step=1s": lambda host: history(host, hour, step="1s"),
        # What the dashboard's history chart asks for (static/netmetrics/history.js), per direction.
        "history 1h step=1s chart fields": lambda host: history(
            host, hour, step="1s", direction="rx", fields="bandwidth_bps,peak_bandwidth_bps"
        ),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ApiClient:
    """Timed GETs to a web server on loopback over one kept-alive connection, asking about each
    of `hosts` in turn (None: no ?host=)."""

    label: str
    port: int
    hosts: list[str] | None = None
    connection: http.client.HTTPConnection | None = None
    turn: int = 0

    def next_host(self) -> str | None:
        if not self.hosts:
            return None
        self.turn += 1
        return self.hosts[self.turn % len(self.hosts)]

    def get(self, path: str) -> float:
        """Milliseconds for one GET on the kept-alive connection; BenchError unless 200."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        began = time.perf_counter()
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        took = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise BenchError(f"{self.label}: GET {path} answered {response.status}: {body[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return took

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def time_queries(
    clients: list[ApiClient], queries: dict[str, Query], requests: int, warmup: int
) -> dict[tuple[str, str], list[float]]:
    """Per (query, client label), the timed requests' milliseconds, the clients interleaved
    request by request so that all of them see the same machine conditions."""
    timings: dict[tuple[str, str], list[float]] = {}
    for query, path in queries.items():
        for _ in range(warmup):
            for client in clients:
                client.get(path(client.next_host()))
        for _ in range(requests):
            for client in clients:
                took = client.get(path(client.next_host()))
                timings.setdefault((query, client.label), []).append(took)
    return timings


def latency_table(
    timings: dict[tuple[str, str], list[float]],
    queries: list[str],
    base: str,
    other: str,
    target_ratio: float,
    target_p50_ms: float | None = None,
) -> None:
    """Print each query's p50 and p95 under `base` and `other` side by side, other's p50 over
    base's, and whether the targets are met (other's p50 at most target_p50_ms, the ratio at
    most target_ratio)."""
    print()
    print(f"| query | {base} p50 | {base} p95 | {other} p50 | {other} p95 | ratio | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for query in queries:
        a, b = timings[(query, base)], timings[(query, other)]
        p50a, p50b = statistics.median(a), statistics.median(b)
        ratio = p50b / p50a
        misses = []
        if target_p50_ms is not None and p50b > target_p50_ms:
            misses.append(f"p50 > {target_p50_ms:g} ms")
        if ratio > target_ratio:
            misses.append(f"ratio > {target_ratio:g}")
        verdict = "MISSED: " + ", ".join(misses) if misses else "ok"
        print(
            f"| {query} | {p50a:.1f} ms | {percentile(a, 0.95):.1f} ms | {p50b:.1f} ms | "
            f"{percentile(b, 0.95):.1f} ms | {ratio:.2f}x | {verdict} |"
        )
    p50 = f"p50 <= {target_p50_ms:g} ms per query at {other}; " if target_p50_ms else ""
    print(f"\ntargets: {p50}{other} p50 <= {target_ratio:g}x the {base} p50 of the same query")
