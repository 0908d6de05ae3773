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
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import IntegerField, Sum
from django.db.models.functions import Cast, ExtractMinute, TruncHour

from metrics.models import Series
from metrics.tiers import MINUTE

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


def bucket_bytes(
    series: Series, since: datetime, until: datetime, bucket: timedelta
) -> list[tuple[int, int]]:
    """(rx, tx) bytes of each bucket in [since, until) that has minute rollups, summed by the
    database: buckets divide an hour, so one is an hour and its minute // bucket minutes."""
    minutes = bucket // timedelta(minutes=1)
    slot = Cast(ExtractMinute("start", tzinfo=UTC), IntegerField()) / minutes
    rows = (
        MINUTE.rows(series, since, until)
        .order_by()
        .values(hour=TruncHour("start", tzinfo=UTC), slot=slot)
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
        "rx": [rx * 8 / seconds for rx, _ in sums],
        "tx": [tx * 8 / seconds for _, tx in sums],
        "total": [(rx + tx) * 8 / seconds for rx, tx in sums],
    }
    bps = {direction: nearest_rank(averages[direction], p) for direction in DIRECTIONS}
    return Percentile(series, p, bucket, since, until, len(sums), bps)
