"""The p-th percentile of an interface's bucket averages (5 minutes by default), as transit is
billed: GET /api/stats/percentile.

A bucket's average is the bytes of the minute rollups that start inside it, times 8, over the
bucket's whole length: exact, from the minute tier, whatever the sampler's interval. Buckets
without any minute rollup (the sampler was not running) are left out rather than counted as
0 bit/s, so an outage neither lowers nor raises the figure; a bucket the sampler covered only in
part counts its bytes over its whole length. The percentile is nearest-rank: of the N averages
sorted ascending, the ceil(p / 100 * N)-th.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BigIntegerField, Func, Sum
from django.db.models.sql.compiler import SQLCompiler

from metrics.models import Series
from metrics.rates import bandwidth_bps
from metrics.tiers import MINUTE

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType

DIRECTIONS = ("rx", "tx", "total")


@dataclass(frozen=True)
class Percentile:
    series: Series
    p: Decimal
    bucket: timedelta
    since: datetime
    until: datetime
    buckets: int  # with samples: the N of the nearest rank
    bps: dict[str, float | None]  # per direction; None without any bucket

    @property
    def bucket_seconds(self) -> int:
        return self.bucket // timedelta(seconds=1)

    @property
    def buckets_in_window(self) -> int:
        return (self.until - self.since) // self.bucket


def nearest_rank(values: list[float], p: Decimal) -> float | None:
    """The ceil(p / 100 * N)-th smallest of N values (p in (0, 100], in exact decimal)."""
    if not values:
        return None
    return sorted(values)[math.ceil(p * len(values) / 100) - 1]


class EpochSeconds(Func):
    """A UTC datetime column's unix seconds, in the database's own code: Django's Extract and
    Trunc call a Python function per row on SQLite, which made 30 days' 43,200 minutes take
    three times as long."""

    output_field = BigIntegerField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _AsSqlType:
        # SQLite holds Django's datetimes as UTC text, which strftime reads. %%%% is a %% once
        # formatted here, and a % once Django's SQLite cursor has turned %s into ?.
        template = "CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _AsSqlType:
        template = "CAST(EXTRACT(EPOCH FROM %(expressions)s) AS BIGINT)"
        return self.as_sql(compiler, connection, template=template, **extra)


def bucket_bytes(
    series: Series, since: datetime, until: datetime, bucket: timedelta
) -> list[tuple[int, int]]:
    """(rx, tx) bytes of each bucket in [since, until) that has minute rollups, summed by the
    database, grouped by unix seconds // bucket seconds (buckets are aligned on the epoch)."""
    rows = (
        MINUTE.rows(series, since, until)
        .order_by()
        .values(slot=EpochSeconds("start") / (bucket // timedelta(seconds=1)))
        .annotate(rx=Sum("rx_total_bytes"), tx=Sum("tx_total_bytes"))
    )
    return [(row["rx"], row["tx"]) for row in rows]


def percentile(
    series: Series, since: datetime, until: datetime, bucket: timedelta, p: Decimal
) -> Percentile:
    """The p-th percentile of the bucket averages in [since, until), per direction, in bit/s."""
    sums = bucket_bytes(series, since, until, bucket)
    seconds = bucket.total_seconds()
    averages = {
        "rx": [bandwidth_bps(rx, seconds) for rx, _ in sums],
        "tx": [bandwidth_bps(tx, seconds) for _, tx in sums],
        "total": [bandwidth_bps(rx + tx, seconds) for rx, tx in sums],
    }
    bps = {direction: nearest_rank(averages[direction], p) for direction in DIRECTIONS}
    return Percentile(series, p, bucket, since, until, len(sums), bps)
