"""Fill a database with N days of synthetic sampling of one interface, as the sampler leaves it.

    .venv/bin/python bench/fill_history.py --days 30 --iface eth0 [--seed 1]

Uses NETMETRICS_DB like every other command, and migrates it first. Existing rows of that
interface are replaced. What it writes is what `runsampler` would have left after N days (with
default retention): two SamplerRuns with a gap between them (a restart, so history shows a hole),
per-second Samples for the last min(N days, raw retention) only, MinuteRollups for the last
min(N days, minute retention), HourRollups for the whole span, and each run's cumulative
counters, last sample, measured seconds and peak as SamplerRun.record sets them.

The rollups are built by the models' own in-memory ``Rollup.add(sample)``, bucketed by the
models' own ``bucket_start``, so the API benchmarks read exactly the rows the sampler's code would
have produced, not a hand-written imitation of them. Speed comes from feeding those adds from a
light stand-in sample (a plain object with the counter attributes, ``elapsed`` and
``counters()``) and instantiating real Sample models only for the raw window that is kept:
30 days are 2.6 M samples.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netmetrics.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Model  # noqa: E402

from bpf.classes import ALL_COUNTER_NAMES, DIRECTIONS  # noqa: E402
from metrics import rates, tiers  # noqa: E402
from metrics.models import Host, Rollup, Sample, SamplerRun, Series, peak_values  # noqa: E402
from metrics.retention import prune  # noqa: E402

ROLLUP_TIERS: list[type[Rollup]] = [tier.rollup_model for tier in tiers.ROLLUPS]

DAY = 86400
BATCH = 5000

# Shares of a direction's bytes (and, second, of its packets) per class. Classes overlap as the
# kernel counts them: https and http are inside tcp, dns inside udp, ipv4 + ipv6 + ARP = total.
RX_SHARES = {
    "ipv4": (0.78, 0.74),
    "ipv6": (0.215, 0.24),
    "tcp": (0.86, 0.80),
    "udp": (0.125, 0.16),
    "icmp": (0.004, 0.02),
    "other": (0.011, 0.02),
    "http": (0.04, 0.03),
    "https": (0.72, 0.62),
    "dns": (0.006, 0.05),
    "syn": (0.0003, 0.003),
    "fin": (0.0003, 0.003),
}
TX_SHARES = {
    "ipv4": (0.76, 0.75),
    "ipv6": (0.235, 0.23),
    "tcp": (0.80, 0.82),
    "udp": (0.17, 0.14),
    "icmp": (0.01, 0.02),
    "other": (0.02, 0.02),
    "http": (0.03, 0.03),
    "https": (0.65, 0.66),
    "dns": (0.02, 0.06),
    "synack": (0.002, 0.003),
    "fin": (0.002, 0.003),
    "rst": (0.0002, 0.0005),
}
# Where the received TCP segments' smoothed RTTs fall: mostly 0.5 to 4 ms.
RTT_SHARES = {"rtt_09": 0.3, "rtt_10": 0.45, "rtt_11": 0.2, "rtt_13": 0.05}


class LightSample:
    """What Rollup.add and peak_values read from a Sample, without a model instance's cost.

    Its attributes are the counter columns, ``elapsed``, ``start`` (unix seconds) and
    ``timestamp``; one dict backs both ``getattr`` and ``counters()``.
    """

    __slots__ = ("__dict__",)

    def __init__(self, values: dict[str, float]) -> None:
        self.__dict__ = values

    def counters(self) -> dict[str, float]:
        return self.__dict__


@dataclass
class RunTotals:
    """A SamplerRun's cumulative state, accumulated as SamplerRun.record would."""

    started_at: float
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ALL_COUNTER_NAMES, 0))
    measured_seconds: float = 0.0
    peak_bandwidth_bps: float = 0.0
    samples: int = 0
    last_timestamp: float = 0.0


class Traffic:
    """Per-second traffic: a diurnal sine, noise, and bursts of a few seconds to a minute."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.burst_left = 0
        self.burst_bps = 0.0

    def sample(self, start: float, elapsed: float) -> dict[str, float]:
        rng = self.rng
        hour_of_day = (start % DAY) / 3600
        diurnal = 1 + 0.8 * math.sin((hour_of_day - 9) / 24 * 2 * math.pi)
        bps = 4e6 * diurnal * rng.lognormvariate(0, 0.35)
        if self.burst_left == 0 and rng.random() < 1 / 900:
            self.burst_left = rng.randint(3, 60)
            self.burst_bps = rng.uniform(2e7, 9e7)
        if self.burst_left:
            self.burst_left -= 1
            bps += self.burst_bps
        rx_bytes = int(bps * elapsed / 8)
        tx_bytes = int(rx_bytes * rng.uniform(0.08, 0.2))
        values: dict[str, float] = dict.fromkeys(ALL_COUNTER_NAMES, 0)
        for direction, octets, size, shares in (
            ("rx", rx_bytes, 1100, RX_SHARES),
            ("tx", tx_bytes, 180, TX_SHARES),
        ):
            packets = max(1, octets // size) if octets else 0
            values[f"{direction}_total_packets"] = packets
            values[f"{direction}_total_bytes"] = octets
            for cls, (byte_share, packet_share) in shares.items():
                values[f"{direction}_{cls}_packets"] = int(packets * packet_share)
                values[f"{direction}_{cls}_bytes"] = int(octets * byte_share)
        for name, share in RTT_SHARES.items():
            values[name] = int(values["rx_tcp_packets"] * share)
        values["tcp_retransmits"] = rng.randint(1, 6) if rng.random() < 0.03 else 0
        values["elapsed"] = elapsed
        values["start"] = start
        return values


def ticks(since: float, until: float, rng: random.Random) -> Iterator[tuple[float, float]]:
    """(start, elapsed) of each sampler tick in [since, until): about a second, now and then
    late (a busy host), never assumed to be exactly 1.000 s."""
    moment = since
    while moment < until:
        elapsed = rng.uniform(0.998, 1.002)
        if rng.random() < 1 / 20000:
            elapsed += rng.uniform(0.5, 3.0)
        elapsed = round(elapsed, 6)
        yield moment, elapsed
        moment = round(moment + elapsed, 6)


def run_spans(end: float, span: float) -> list[tuple[float, float]]:
    """Two runs ending at `end`: the restart's gap lies in the last day (a 24 h chart shows it)
    and a little before the middle of a short span."""
    gap = min(900.0, span / 30)
    gap_end = end - min(span * 0.4, 6 * 3600)
    return [(end - span, gap_end - gap), (gap_end, end)]


def as_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def clear(series: Series) -> None:
    """Remove the interface's rows from every table, so a refill starts from nothing."""
    with transaction.atomic():
        SamplerRun.objects.filter(**series.filter()).update(last_sample=None)
        Sample.objects.filter(**series.filter()).delete()
        for tier in ROLLUP_TIERS:
            tier.objects.filter(**series.filter()).delete()
        SamplerRun.objects.filter(**series.filter()).delete()


def fill(days: float, series: Series, seed: int) -> dict[str, object]:
    """Generate, bucket and write; return what was written, and how long it took."""
    clock = time.monotonic()
    end = float(int(time.time()))  # "now" for the data and for retention
    span = days * DAY
    kept_since = {tier.model: tier.kept_since(as_datetime(end)).timestamp() for tier in tiers.TIERS}
    rng = random.Random(seed)
    traffic = Traffic(seed + 1)
    totals: list[RunTotals] = []
    raw: list[tuple[int, dict[str, float]]] = []  # (run index, values) of the kept window
    buckets: dict[type[Rollup], dict[int, Rollup]] = {tier: {} for tier in ROLLUP_TIERS}
    steps = {tier: int(tier.STEP.total_seconds()) for tier in ROLLUP_TIERS}
    generated = 0
    for index, (since, until) in enumerate(run_spans(end, span)):
        run = RunTotals(started_at=since - 0.3)
        totals.append(run)
        cumulative = run.counters
        current: dict[type[Rollup], tuple[int, Rollup | None]] = {
            tier: (-1, None) for tier in ROLLUP_TIERS
        }
        for start, elapsed in ticks(since, until, rng):
            values = traffic.sample(start, elapsed)
            sample = LightSample(values)
            for name in ALL_COUNTER_NAMES:
                cumulative[name] += values[name]
            run.measured_seconds += elapsed
            peak = rates.rate(cast("dict[str, int]", values), DIRECTIONS, "total", "bytes", elapsed)
            if peak > run.peak_bandwidth_bps:
                run.peak_bandwidth_bps = peak
            run.samples += 1
            run.last_timestamp = round(start + elapsed, 6)
            generated += 1
            if start >= kept_since[Sample]:
                raw.append((index, values))
            for tier in ROLLUP_TIERS:
                if start < kept_since[tier]:
                    continue
                key, bucket = current[tier]
                if int(start) // steps[tier] != key:
                    key = int(start) // steps[tier]
                    bucket = buckets[tier].get(key)
                    if bucket is None:
                        bucket_start = tier.bucket_start(as_datetime(start))
                        assert bucket_start.timestamp() == key * steps[tier]
                        bucket = tier(**series.filter(), start=bucket_start)
                        buckets[tier][key] = bucket
                    current[tier] = (key, bucket)
                assert bucket is not None
                bucket.add(cast(Sample, sample))  # duck-typed: what Rollup.add reads
    generated_in = time.monotonic() - clock

    with transaction.atomic():
        runs = []
        for index, run in enumerate(totals):
            stopped = index < len(totals) - 1
            runs.append(
                SamplerRun.objects.create(
                    host_id=series.host_id,
                    interface=series.interface,
                    mode="native",
                    egress=True,
                    interval=1.0,
                    pid=40000 + index,
                    started_at=as_datetime(run.started_at),
                    stopped_at=as_datetime(run.last_timestamp + 0.2) if stopped else None,
                )
            )
        last_rows: dict[int, Sample] = {}
        batch: list[Sample] = []
        for index, values in raw:
            start = values["start"]
            row = Sample(
                run=runs[index],
                host_id=series.host_id,
                interface=series.interface,
                start=as_datetime(start),
                timestamp=as_datetime(round(start + values["elapsed"], 6)),
                elapsed=values["elapsed"],
                **{name: values[name] for name in ALL_COUNTER_NAMES},
            )
            batch.append(row)
            last_rows[index] = row
            if len(batch) >= BATCH:
                Sample.objects.bulk_create(batch)
                batch = []
        Sample.objects.bulk_create(batch)
        for tier in ROLLUP_TIERS:
            rows = list(buckets[tier].values())
            for i in range(0, len(rows), BATCH):
                tier.objects.bulk_create(rows[i : i + BATCH])
        for index, (run, run_row) in enumerate(zip(totals, runs, strict=True)):
            last = last_rows.get(index)
            if last is not None and last.pk is None:  # a backend without RETURNING
                last = Sample.objects.filter(run=run_row).order_by("-start").first()
            SamplerRun.objects.filter(pk=run_row.pk).update(
                **run.counters,
                last_sample=last,
                measured_seconds=run.measured_seconds,
                peak_bandwidth_bps=run.peak_bandwidth_bps,
            )
    expired = prune(series, as_datetime(end))
    check(series, totals, buckets)
    return {
        "generated": generated,
        "generated_in": generated_in,
        "total_in": time.monotonic() - clock,
        "expired": expired,
    }


def check(series: Series, totals: list[RunTotals], buckets: dict[type[Rollup], dict]) -> None:
    """The run totals equal the sum of every generated sample, as the hour tier (which holds all
    of them) also says; the peak is a sample's own, as record() computes it."""
    hour_tier = ROLLUP_TIERS[-1]
    hours = buckets[hour_tier].values()
    for name in ALL_COUNTER_NAMES:
        summed = sum(run.counters[name] for run in totals)
        if summed != sum(getattr(bucket, name) for bucket in hours):
            raise AssertionError(f"{name}: run totals {summed} != sum of the hour rollups")
    peak = max(bucket.peak_bandwidth_bps for bucket in hours)
    if not math.isclose(peak, max(run.peak_bandwidth_bps for run in totals)):
        raise AssertionError("run peaks disagree with the rollups' peaks")
    one = next(iter(hours))
    if peak_values(one.counters(), 1.0).keys() - vars(one).keys():
        raise AssertionError("peak columns missing from a rollup")
    stored = SamplerRun.objects.filter(**series.filter()).count()
    if stored != len(totals):
        raise AssertionError(f"{stored} runs stored, {len(totals)} generated")


def database_size() -> int:
    """Bytes of the SQLite database: main file plus WAL, after a checkpoint."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(str(settings.DATABASES["default"]["NAME"]))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def row_counts() -> dict[str, int]:
    models: list[type[Model]] = [SamplerRun, Sample, *ROLLUP_TIERS]
    return {model.__name__: model._default_manager.count() for model in models}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, required=True, help="span to fill (0.0417 = 1 h)")
    parser.add_argument("--iface", required=True, help="interface name to write the rows under")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args()
    if not 0 < args.days <= 3660:
        parser.error("--days must be more than 0 and at most 3660")
    if len(args.iface) > 15:
        parser.error("--iface: at most 15 characters, as interface names are")
    call_command("migrate", "--no-input", verbosity=0)
    series = Series(Host.objects.local().pk, args.iface)
    clear(series)
    stats = fill(args.days, series, args.seed)
    print(f"database: {settings.DATABASES['default']['NAME']}")
    print(
        f"generated {stats['generated']:,} samples over {args.days:g} d of {args.iface} in "
        f"{stats['generated_in']:.1f} s; written in {stats['total_in']:.1f} s in all "
        f"(retention pruned {stats['expired']} more rows)"
    )
    for table, count in row_counts().items():
        print(f"  {table:<13} {count:>10,} rows")
    size = database_size()
    print(f"  database size {size:>10,} bytes ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
