"""One writer process of bench/fleet: some of a simulated fleet's hosts, each writing at 1 Hz what
its sampler writes, through the sampler's own write path, without the kernel.

    DATABASE_URL=... .venv/bin/python bench/fleet_writer.py --hosts 0:50 --phases spread \
        --seconds 40 --warmup 5 --out ticks.json

Each host is a Host row named fleet-NNNN with the runs `runsampler --all` keeps on a
two-interface host (eth0, eth1 and the host total `all`), made on first use and continued after.
Every tick of a host is one `SamplerRun.objects.record()` of its three runs in one transaction,
as `Sampler.tick` makes it (samples, minute and hour rollups, runs), with the cumulative counters
of bench/fill_history.py's traffic (one stream per interface; the total sums them), an interval
of the real time since the host's last write, and after the commit the sampler's pruning (one
series a tick on 3 ticks of 10, from the host's own slot). Flows are off (no LiveFlows, no flow
minutes).

Ticks follow runsampler's clock: a host ticks on its own wall-clock phase (`spread`: the phase
runsampler gives it against a central database, Host.tick_phase of its id, and its pruning on
Host.prune_slot's tick; `aligned`: every host on the whole second and pruning on the same
ticks, as NTP-synced samplers started together would be without them), and after a tick it
waits for the next boundary after now, so a tick that ends after the next one's time skips it.
One process writes its hosts one after the other, on one connection: what a transaction-pooling
connection pool in front of the database does with many samplers.

With --replay the hosts send the SQL that record() sent instead (`replay`): one real tick each
at set-up is captured statement by statement with its parameters. Each statement is prepared
once on the writer's connection, as psycopg prepares record()'s after five ticks
(envconfig.POSTGRES_BINDING), and every tick then executes each prepared statement with its
captured values (rendered once, sent in text format through libpq's PQexecPrepared), one after
the other in a transaction: the same samples inserted, the same buckets upserted, the same runs
updated, through the same protocol and plans, with none of the ORM's or the driver's CPU in the
writer. What that measures is PostgreSQL's side of the write path when the writers cost next to
nothing, as they do to the database when each sampler runs on its own host.

Protocol: once set up (hosts, runs, connection) it prints `ready <PID of its PostgreSQL backend>`,
reads the start time (unix seconds) on stdin, ticks for --seconds from then, and writes every
tick after --warmup to --out as JSON.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netmetrics.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg.adapt import PyFormat, Transformer  # noqa: E402
from psycopg.pq import ExecStatus  # noqa: E402

from bench.fill_history import Traffic  # noqa: E402
from bench.fleet_history import INTERFACES, SERIES, host_id, host_name  # noqa: E402
from bpf.classes import ALL_COUNTER_NAMES  # noqa: E402
from metrics.models import Host, Recording, SamplerRun, Series  # noqa: E402
from metrics.retention import prune  # noqa: E402
from metrics.sampler import Sampler  # noqa: E402
from metrics.selection import HOST_TOTAL  # noqa: E402

Statement = tuple[str, Any]  # SQL with %s placeholders, and its parameters (None: none)
Prepared = tuple[bytes, list[bytes | None]]  # a prepared statement's name, its values as text


@dataclass
class SimulatedHost:
    """One host's sampler: its runs (its interfaces', then its total's), traffic and clock."""

    index: int
    runs: list[SamplerRun]
    traffic: list[Traffic]
    phase: float  # seconds after the whole second that it ticks at
    prune_slot: int  # the tick of every Sampler.PRUNE_EVERY that it starts pruning on
    last_written: float  # unix time of its last write: its next interval starts there
    replay: list[Prepared] | None = None  # a captured tick's statements, to send again
    ticks: int = 0
    to_prune: deque[Series] = field(default_factory=deque)

    def next_tick(self, now: float) -> float:
        """The first of its boundaries after now (runsampler's _next_boundary, with a phase)."""
        return math.floor(now - self.phase) + 1 + self.phase

    def tick(self) -> None:
        """One tick's write: the interval since the last one, in one transaction."""
        if self.replay is not None:
            raw = connection.connection
            assert raw is not None
            pgconn = raw.pgconn
            # After a failure the rest fail too and COMMIT rolls back: the first error says why.
            results = [pgconn.exec_(b"BEGIN")]
            results += [pgconn.exec_prepared(name, values) for name, values in self.replay]
            results.append(pgconn.exec_(b"COMMIT"))
            for result in results:
                if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
                    raise RuntimeError(result.error_message.decode())
            self.ticks += 1
            return
        now = time.time()
        elapsed = now - self.last_written
        timestamp = timezone.now()
        *interfaces, total = self.runs
        deltas = [
            {name: int(values[name]) for name in ALL_COUNTER_NAMES}
            for values in (traffic.sample(now - elapsed, elapsed) for traffic in self.traffic)
        ]
        recordings = [
            Recording(run, {n: getattr(run, n) + delta[n] for n in ALL_COUNTER_NAMES}, elapsed)
            for run, delta in zip(interfaces, deltas, strict=True)
        ]
        summed = {n: getattr(total, n) + sum(d[n] for d in deltas) for n in ALL_COUNTER_NAMES}
        recordings.append(Recording(total, summed, elapsed, list(INTERFACES)))
        with transaction.atomic():
            SamplerRun.objects.record(recordings, timestamp)
        self.last_written = now
        self.ticks += 1

    def prune(self) -> None:
        """The sampler's pruning after a tick: a round every Sampler.PRUNE_EVERY ticks, on the
        host's slot, its series one a tick."""
        if not self.to_prune and Sampler.prune_round_starts(self.ticks, self.prune_slot):
            self.to_prune.extend(run.series for run in self.runs)
        if self.to_prune:
            prune(self.to_prune.popleft(), timezone.now())


def capture(host: SimulatedHost) -> list[Statement]:
    """The statements of one of the host's ticks, with their parameters. Any tick will do: its
    buckets are upserted, so sending it again adds to them whether they are new or not."""
    statements: list[Statement] = []

    def keep(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        params = list(params) if many else [params]  # executemany may be given an iterator
        statements.extend((sql, each) for each in params)
        return execute(sql, params if many else params[0], many, context)

    with connection.execute_wrapper(keep):
        host.tick()
    return statements


def numbered_placeholders(sql: str) -> str:
    """Django's %s placeholders as PostgreSQL's $1, $2, ... (and %% as %)."""
    numbers = iter(range(1, sql.count("%s") + 1))
    return re.sub("%[s%]", lambda m: f"${next(numbers)}" if m[0] == "%s" else "%", sql)


def prepared(statements: list[Statement], names: dict[str, bytes]) -> list[Prepared]:
    """The statements as names of statements prepared on this connection (names: SQL to name,
    added to and prepared here as new ones come) and their values in text format."""
    raw = connection.connection
    assert raw is not None
    dump = Transformer(raw)
    replay = []
    for sql, params in statements:
        if sql not in names:
            names[sql] = name = f"fleet_{len(names)}".encode()
            result = raw.pgconn.prepare(name, numbered_placeholders(sql).encode())
            if result.status != ExecStatus.COMMAND_OK:
                raise RuntimeError(result.error_message.decode())
        values = dump.dump_sequence(params or [], [PyFormat.TEXT] * len(params or []))
        replay.append((names[sql], [None if v is None else bytes(v) for v in values]))
    return replay


def set_up(first: int, last: int, phases: str) -> list[SimulatedHost]:
    """Hosts first..last-1 with their runs, made if missing, continued if there."""
    ids = [host_id(i) for i in range(first, last)]
    Host.objects.bulk_create(
        [Host(id=host_id(i), name=host_name(i)) for i in range(first, last)],
        ignore_conflicts=True,
    )
    existing = {
        (run.host_id, run.interface): run
        for run in SamplerRun.objects.filter(host_id__in=ids, stopped_at=None).order_by("pk")
    }
    now = timezone.now()
    hosts = []
    for index in range(first, last):
        runs = []
        for name in SERIES:
            run = existing.get((host_id(index), name))
            if run is None:
                run = SamplerRun.objects.create(
                    host_id=host_id(index),
                    interface=name,
                    mode="host" if name == HOST_TOTAL else "native",
                    egress=True,
                    interval=1.0,
                    pid=40000 + index,
                    started_at=now,
                    members=list(INTERFACES) if name == HOST_TOTAL else [],
                )
            runs.append(run)
        last_written = max(run.last_written() for run in runs).timestamp()
        host = Host(id=host_id(index))
        spread = phases == "spread"
        phase = host.tick_phase(1.0) if spread else 0.0
        slot = host.prune_slot(Sampler.PRUNE_EVERY) if spread else 0
        traffic = [Traffic(index * len(INTERFACES) + k) for k in range(len(INTERFACES))]
        hosts.append(SimulatedHost(index, runs, traffic, phase, slot, last_written))
    return hosts


def run(hosts: list[SimulatedHost], start: float, seconds: float, warmup: float) -> dict:
    """Tick every host from `start` for `seconds`; what was measured after `warmup`."""
    queue = [(host.next_tick(start - 1e-6), host.index) for host in hosts]
    heapq.heapify(queue)
    by_index = {host.index: host for host in hosts}
    stop, counted = start + seconds, start + warmup
    ticks: list[tuple[int, float, float, float]] = []  # host, due, began, committed
    skipped = 0
    cpu = None
    while queue:
        due, index = heapq.heappop(queue)
        if due >= stop:
            continue
        if cpu is None and due >= counted:
            cpu = time.process_time()
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        host = by_index[index]
        began = time.time()
        host.tick()
        committed = time.time()
        host.prune()
        if due >= counted:
            ticks.append((index, due - start, began - start, committed - start))
        following = host.next_tick(time.time())
        if due >= counted:
            skipped += max(0, round(following - due) - 1)
        heapq.heappush(queue, (following, index))
    return {
        "ticks": ticks,
        "skipped": skipped,
        "cpu_seconds": time.process_time() - (cpu or time.process_time()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hosts", required=True, help="FIRST:LAST, the hosts' numbers [first, last)"
    )
    parser.add_argument("--phases", choices=["spread", "aligned"], required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--replay", action="store_true", help="send a captured tick's SQL")
    args = parser.parse_args()
    first, last = (int(part) for part in args.hosts.split(":"))
    hosts = set_up(first, last, args.phases)
    if args.replay:
        names: dict[str, bytes] = {}
        for host in hosts:
            host.replay = prepared(capture(host), names)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone() or (0,)
    print(f"ready {backend}", flush=True)
    start = float(sys.stdin.readline())
    measured = run(hosts, start, args.seconds, args.warmup)
    measured["backend"] = backend
    measured["started"] = datetime.fromtimestamp(start, UTC).isoformat()
    args.out.write_text(json.dumps(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
