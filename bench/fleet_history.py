"""Fill a PostgreSQL database with the history of a fleet of hosts by SQL: bench/fleet's history.

    DATABASE_URL=... .venv/bin/python bench/fleet_history.py --hosts 500 --queried 4 --days 30 \
        --minute-days 14 --raw-hours 1.5

Every host is a Host row named fleet-NNNN (its id a UUID made from the name, the same in every
database) with the runs `runsampler --all` keeps on a two-interface host: eth0, eth1 and the
host total `all`, one run each over the whole span. The tiers are written as the sampler and its
retention would leave them, by `INSERT ... SELECT generate_series` (the ORM row by row would take
days): hour rollups over --days, minute rollups over the last --minute-days and raw samples over
the last --raw-hours for every host, and for the --queried hosts (the ones bench/fleet asks the
API about: fleet-0000 and others spread over the fleet) minute rollups over --days too (as far as
minute retention keeps them). Rows go in in time order, every host's row of a second (or bucket)
beside the others', as a fleet writes them: a series' rows are spread over the table's pages as
they are in use, not packed together.

Raw samples span the same time for every host, as in a fleet whose hosts have all run for their
retention: when the queried hosts alone held 48 hours beside the others' hour and a half,
PostgreSQL's statistics took each queried host for 5% of the table and estimated 76,000 rows
for an hour of one of its series (3,600), and planned a parallel bitmap scan with JIT
compilation: 2.2x the single host's time for that history, all of it an artefact of the fill.

Counters follow bench/fill_history.py's traffic (a diurnal sine with noise, its class shares and
RTT buckets; the host total carries both interfaces' traffic), drawn per row by random(): each
tier is plausible on its own, but hour rollups are not the sums of the generated minutes (nothing
bench/fleet measures depends on that). Then every table is VACUUM ANALYZEd, as autovacuum would
have, and each run gets its cumulative counters from its hour rollups and its newest sample.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netmetrics.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from bench.fill_history import RTT_SHARES, RX_SHARES, TX_SHARES  # noqa: E402
from bpf.classes import ALL_COUNTER_NAMES, DIRECTIONS  # noqa: E402
from metrics import tiers  # noqa: E402
from metrics.models import PEAKS, Host, SamplerRun  # noqa: E402
from metrics.selection import HOST_TOTAL  # noqa: E402

INTERFACES = ("eth0", "eth1")
SERIES = (*INTERFACES, HOST_TOTAL)  # what one host writes: its interfaces and its total
NAMESPACE = uuid.UUID("6f1e3c1a-8d7b-4f0e-9a51-2d0c6b7e4a10")  # of the fleet's host ids
ROWS_PER_STATEMENT = 100_000  # rows a chunk of INSERT ... SELECT writes, one transaction each
# bench/fill_history.py's mean: 4 Mbit/s received per interface, a diurnal swing of +-80%.
RX_BYTES_PER_SECOND = 4e6 / 8
PACKET_SIZE = {"rx": 1100, "tx": 180}
SHARES = {"rx": RX_SHARES, "tx": TX_SHARES}


def host_name(index: int) -> str:
    return f"fleet-{index:04d}"


def host_id(index: int) -> uuid.UUID:
    """The id of fleet host `index`: the same in every database bench/fleet makes."""
    return uuid.uuid5(NAMESPACE, host_name(index))


def queried_indexes(hosts: int, queried: int) -> list[int]:
    """The hosts the API is asked about: fleet-0000 first, the others spread over the fleet."""
    return sorted({round(i * (hosts - 1) / max(1, queried - 1)) for i in range(queried)})[:hosts]


def counter_expressions(seconds: str) -> dict[str, str]:
    """SQL per counter column, over a row with `rxb` and `txb` (bytes each way over the row's
    `seconds`) and `u` (a uniform draw): the classes as fill_history's shares of them."""
    values: dict[str, str] = dict.fromkeys(ALL_COUNTER_NAMES, "0")
    for direction in DIRECTIONS:
        octets = f"{direction[0]}xb"
        packets = f"greatest(1, {octets} / {PACKET_SIZE[direction]})"
        values[f"{direction}_total_bytes"] = f"{octets}::bigint"
        values[f"{direction}_total_packets"] = f"({packets})::bigint"
        for cls, (byte_share, packet_share) in SHARES[direction].items():
            values[f"{direction}_{cls}_bytes"] = f"floor({octets} * {byte_share})::bigint"
            values[f"{direction}_{cls}_packets"] = f"floor({packets} * {packet_share})::bigint"
    tcp_packets = f"greatest(1, rxb / {PACKET_SIZE['rx']}) * {RX_SHARES['tcp'][1]}"
    for name, share in RTT_SHARES.items():
        values[name] = f"floor({tcp_packets} * {share})::bigint"
    values["tcp_retransmits"] = f"floor(u * 0.1 * {seconds})::bigint"
    return values


def peak_expressions(seconds: str) -> dict[str, str]:
    """SQL per peak column of a rollup: a second's rate above the bucket's mean, by `pk`."""
    octets = {"rx": "rxb", "tx": "txb"}
    values = {}
    for column, directions, unit in PEAKS:
        count = " + ".join(
            octets[d] if unit == "bytes" else f"greatest(1, {octets[d]} / {PACKET_SIZE[d]})"
            for d in directions
        )
        scale = 8 if unit == "bytes" else 1
        values[column] = f"({count}) * {scale} / {seconds} * pk"
    return values


def insert_sql(tier: tiers.Tier) -> str:
    """INSERT ... SELECT of a tier's rows for the chunk of time given as parameters (lo, hi,
    step, everyone: the oldest start of every host's rows, end: now)."""
    model = tier.model
    expressions = counter_expressions("seconds")
    if not tier.raw:
        expressions |= peak_expressions("seconds")
        expressions |= {"seconds": "seconds", "samples": "round(seconds)::int"}
    else:
        expressions |= {
            "run_id": "run_id",
            "timestamp": "start + make_interval(secs => seconds)",
            "elapsed": "seconds",
        }
    expressions |= {"host_id": "host_id", "interface": "interface", "start": "start"}
    meta = model._meta
    columns = [f.column for f in meta.concrete_fields if f is not meta.pk and f.column]
    missing = set(columns) - expressions.keys()
    assert not missing, f"{meta.db_table}: no expression for {sorted(missing)}"
    # The start of a raw sample is a tick's: a few ms after its whole second; its interval a
    # second, give or take 2 ms. A bucket measured its whole step (the newest one, so far).
    if tier.raw:
        start = "g.t + make_interval(secs => 0.002 + 0.006 * random())"
        length = "0.998 + 0.004 * random()"
    else:
        start = "g.t"
        length = f"least({tier.step.total_seconds()}, extract(epoch from %(end)s - g.t))"
    diurnal = "1 + 0.8 * sin((extract(epoch from g.t) / 3600 - 9) / 24 * 2 * pi())"
    return f"""
        INSERT INTO {meta.db_table} ({", ".join(columns)})
        SELECT {", ".join(expressions[c] for c in columns)}
        FROM (
            SELECT start, host_id, interface, run_id, seconds, u, pk,
                   floor(rate * seconds) AS rxb,
                   floor(rate * seconds * (0.08 + 0.12 * random())) AS txb
            FROM (
                SELECT {start} AS start, s.host_id, s.interface, s.run_id,
                       ({length})::float8 AS seconds,
                       {RX_BYTES_PER_SECOND} * s.scale * ({diurnal}) * (0.6 + 0.8 * random())
                           AS rate,
                       random() AS u, 1.2 + random() AS pk
                FROM generate_series(%(lo)s, %(hi)s, %(step)s::interval) AS g(t)
                CROSS JOIN bench_fleet_series AS s
                WHERE s.queried OR g.t >= %(everyone)s
                ORDER BY g.t, s.ord
            ) AS drawn
        ) AS row
    """


def chunks(
    lo: datetime, hi: datetime, step: timedelta, everyone: datetime, series: int, queried: int
) -> Iterator[tuple[datetime, datetime]]:
    """The bucket starts in [lo, hi) in chunks of about ROWS_PER_STATEMENT rows (before
    `everyone`, only the queried hosts' series have rows): each chunk's first start, and a moment
    just before the next chunk's (generate_series' bounds are inclusive)."""
    moment = lo
    while moment < hi:
        width = series if moment >= everyone else queried
        span = step * max(1, ROWS_PER_STATEMENT // width)
        end = min(hi, moment + span, everyone if moment < everyone else hi)
        yield moment, end - timedelta(microseconds=1)
        moment = end


def make_hosts(count: int, queried: list[int], since: datetime) -> None:
    """The hosts, their runs, and the series table the INSERTs join (a plain table, dropped at
    the end)."""
    Host.objects.bulk_create(
        [Host(id=host_id(i), name=host_name(i)) for i in range(count)], ignore_conflicts=True
    )
    runs = [
        SamplerRun(
            host_id=host_id(i),
            interface=name,
            mode="host" if name == HOST_TOTAL else "native",
            egress=True,
            interval=1.0,
            pid=40000 + i,
            started_at=since - timedelta(seconds=0.3),
            members=list(INTERFACES) if name == HOST_TOTAL else [],
        )
        for i in range(count)
        for name in SERIES
    ]
    SamplerRun.objects.bulk_create(runs)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_fleet_series (ord int, host_id uuid, interface varchar(15), "
            "run_id bigint, scale float8, queried bool)"
        )
        cursor.executemany(
            "INSERT INTO bench_fleet_series VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    n,
                    run.host_id,
                    run.interface,
                    run.pk,
                    len(INTERFACES) if run.interface == HOST_TOTAL else 1,
                    int(run.pid) - 40000 in queried,
                )
                for n, run in enumerate(runs)
            ],
        )


def fill_tier(
    tier: tiers.Tier,
    end: datetime,
    span: timedelta,
    everyone: timedelta,
    hosts: int,
    queried: int,
) -> int:
    """One tier's rows over `span` before `end` (every host's over the last `everyone`):
    how many."""
    model, step = tier.model, tier.step
    first = end - span
    first = datetime.fromtimestamp(
        math.ceil(first.timestamp() / step.total_seconds()) * step.total_seconds(), UTC
    )
    since_everyone = max(first, end - everyone)
    since_everyone = datetime.fromtimestamp(
        math.ceil(since_everyone.timestamp() / step.total_seconds()) * step.total_seconds(), UTC
    )
    sql = insert_sql(tier)
    written = 0
    width = len(SERIES)
    began = time.monotonic()
    for lo, hi in chunks(first, end, step, since_everyone, hosts * width, queried * width):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                sql,
                {
                    "lo": lo,
                    "hi": hi,
                    "step": f"{step.total_seconds():g} seconds",
                    "everyone": since_everyone,
                    "end": end,
                },
            )
            written += cursor.rowcount
    print(
        f"  {model._meta.db_table}: {written:,} rows in {time.monotonic() - began:.0f} s",
        flush=True,
    )
    return written


def finish_runs() -> None:
    """Each run's cumulative counters (the sums of its hour rollups), measured seconds and peak,
    and its newest sample, as SamplerRun.record leaves them."""
    hour = tiers.HOUR.rollup_model._meta.db_table
    sums = ", ".join(f"{name} = h.{name}" for name in ALL_COUNTER_NAMES)
    summed = ", ".join(f"sum({name}) AS {name}" for name in ALL_COUNTER_NAMES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE metrics_samplerrun AS r SET {sums}, measured_seconds = h.seconds,
                peak_bandwidth_bps = h.peak
            FROM (SELECT host_id, interface, {summed}, sum(seconds) AS seconds,
                         max(peak_bandwidth_bps) AS peak
                  FROM {hour} GROUP BY host_id, interface) AS h
            WHERE r.host_id = h.host_id AND r.interface = h.interface
            """
        )
        cursor.execute(
            """
            UPDATE metrics_samplerrun AS r SET last_sample_id = (
                SELECT s.id FROM metrics_sample AS s
                WHERE s.host_id = r.host_id AND s.interface = r.interface
                ORDER BY s.start DESC LIMIT 1
            )
            """
        )
        cursor.execute("DROP TABLE bench_fleet_series")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--queried", type=int, default=4, help="hosts with every tier in full")
    parser.add_argument("--days", type=float, default=30.0, help="history (hour rollups)")
    parser.add_argument("--minute-days", type=float, default=30.0, help="of every host's")
    parser.add_argument("--raw-hours", type=float, default=48.0, help="of every host's")
    parser.add_argument(
        "--end",
        type=int,
        help="unix time the history ends at (default now): the same in the "
        "databases bench/fleet compares",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        parser.error("needs DATABASE_URL: the SQL is PostgreSQL's")
    if not 1 <= args.queried <= args.hosts <= 10_000:
        parser.error("--queried must be 1..--hosts, --hosts at most 10000")
    end = datetime.fromtimestamp(args.end or int(time.time()), UTC)
    days = timedelta(days=args.days)
    queried = queried_indexes(args.hosts, args.queried)
    began = time.monotonic()
    make_hosts(args.hosts, queried, end - days)
    kept = {tier.name: tier.kept_since(end) for tier in tiers.TIERS}
    plan = [
        (tiers.HOUR, days, days),
        (tiers.MINUTE, min(days, end - kept["1m"]), timedelta(days=args.minute_days)),
        (tiers.SECOND, min(days, end - kept["1s"], timedelta(hours=args.raw_hours)), days),
    ]
    rows = {}
    for tier, span, everyone in plan:
        rows[tier.model._meta.db_table] = fill_tier(
            tier, end, span, min(span, everyone), args.hosts, len(queried)
        )
    finish_runs()
    vacuumed = time.monotonic()
    with connection.cursor() as cursor:
        for table in ("metrics_host", "metrics_samplerrun", *rows):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"  vacuum analyze: {time.monotonic() - vacuumed:.0f} s", flush=True)
    print(
        json.dumps(
            {
                "end": end.isoformat(),
                "rows": rows,
                "queried": [str(host_id(i)) for i in queried],
                "seconds": round(time.monotonic() - began, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
