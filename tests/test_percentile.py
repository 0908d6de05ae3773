"""GET /api/stats/percentile: the nearest-rank percentile of bucket averages equals a brute force
over the generated samples themselves (not the rollups the endpoint reads), buckets without
samples left out; 400s that say why."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.utils import timezone

from metrics.models import Host, SamplerRun
from tests.samples import start_run, write_samples
from usage.percentile import nearest_rank

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 13, 37, 21, tzinfo=UTC)
FIRST = datetime(2026, 11, 17, 13, 37, tzinfo=UTC)
GAP = (datetime(2026, 11, 19, 17, 40, tzinfo=UTC), datetime(2026, 11, 19, 18, 17, tzinfo=UTC))


def _rows() -> list[tuple[datetime, float, int, int]]:
    """One or two samples a minute at random seconds, busy spells, and a gap (the sampler was
    off)."""
    rng = random.Random(14)
    rows = []
    for minute in range(3 * 24 * 60):
        base = FIRST + timedelta(minutes=minute)
        if GAP[0] <= base < GAP[1]:
            continue
        offsets = (
            [rng.randrange(30), 30 + rng.randrange(30)]
            if rng.random() < 0.2
            else [rng.randrange(60)]
        )
        busy = 40 if rng.random() < 0.06 else 1
        for offset in offsets:
            rx = busy * rng.randrange(2_000_000)
            rows.append((base + timedelta(seconds=offset), 1.0, rx, rx // rng.randint(3, 12)))
    return [row for row in rows if row[0] < NOW]


ROWS = _rows()


def brute_force(since: datetime, until: datetime, bucket_minutes: int, p: str) -> dict:
    """The percentile as the definition says, from the samples: bytes per bucket of the samples
    that start in it, * 8 / its seconds; sorted; the ceil(p / 100 * N)-th."""
    seconds = bucket_minutes * 60
    sums: dict[int, list[int]] = {}
    for start, _, rx, tx in ROWS:
        if since <= start < until:
            bucket = sums.setdefault(int(start.timestamp()) // seconds, [0, 0])
            bucket[0] += rx
            bucket[1] += tx
    rank = math.ceil(Fraction(p) * len(sums) / 100)
    pick = {
        "rx": sorted(rx * 8 / seconds for rx, _ in sums.values()),
        "tx": sorted(tx * 8 / seconds for _, tx in sums.values()),
        "total": sorted((rx + tx) * 8 / seconds for rx, tx in sums.values()),
    }
    return {"buckets": len(sums), "bps": {d: values[rank - 1] for d, values in pick.items()}}


@pytest.fixture(scope="module")
def written(django_db_setup, django_db_blocker) -> Iterator[SamplerRun]:
    with django_db_blocker.unblock():
        run = start_run("eth0", started_at=FIRST)
        write_samples(run, ROWS)
        write_samples(
            start_run("eth1", started_at=FIRST), [(NOW - timedelta(hours=1), 1.0, 10**12, 0)]
        )
        yield run
        Host.objects.all().delete()


@pytest.fixture
def history(written: SamplerRun, monkeypatch) -> SamplerRun:
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return written


@pytest.mark.parametrize(
    ("window", "p", "bucket", "until"),
    [
        ("2d", "95", 5, "2026-11-20T13:35:00Z"),
        ("2d", "50", 15, "2026-11-20T13:30:00Z"),
        ("1d", "99.9", 1, "2026-11-20T13:37:00Z"),
        ("3d", "100", 60, "2026-11-20T13:00:00Z"),
        ("12h", "2.5", 10, "2026-11-20T13:30:00Z"),
    ],
)
def test_equals_a_brute_force_over_the_samples(api, history, window, p, bucket, until) -> None:
    body = api(f"/api/stats/percentile?iface=eth0&window={window}&p={p}&bucket={bucket}m")
    end = datetime.fromisoformat(until)
    span = {
        "12h": timedelta(hours=12),
        "1d": timedelta(days=1),
        "2d": timedelta(days=2),
        "3d": timedelta(days=3),
    }[window]
    want = brute_force(end - span, end, bucket, p)
    assert body["until"] == until
    assert body["since"] == (end - span).isoformat().replace("+00:00", "Z")
    assert (body["iface"], body["p"], body["bucket_seconds"]) == ("eth0", float(p), bucket * 60)
    assert body["buckets_in_window"] == span // timedelta(minutes=bucket)
    assert body["buckets"] == want["buckets"]
    assert body["bps"] == want["bps"]


def test_the_gap_is_left_out_not_counted_as_zero(api, history) -> None:
    body = api("/api/stats/percentile?iface=eth0&window=2d&p=95&bucket=5m")
    # 37 minutes without samples: 7 whole buckets, 17:40 to 18:15; the bucket from 18:15 has
    # samples from 18:17 on, and its average is over its whole 5 minutes.
    assert body["buckets_in_window"] - body["buckets"] == 7


def test_defaults_are_30_days_p95_5_minutes(api, history) -> None:
    body = api("/api/stats/percentile?iface=eth0")
    assert (body["p"], body["bucket_seconds"], body["since"]) == (95.0, 300, "2026-10-21T13:35:00Z")
    until = datetime(2026, 11, 20, 13, 35, tzinfo=UTC)
    assert body["bps"] == brute_force(until - timedelta(days=30), until, 5, "95")["bps"]


def test_the_default_window_is_the_minute_retention_when_shorter(api, history, settings) -> None:
    settings.NETMETRICS_RETENTION = {
        **settings.NETMETRICS_RETENTION,
        "minutes": timedelta(days=2, minutes=30),
    }
    body = api("/api/stats/percentile?iface=eth0")
    assert (body["since"], body["until"]) == ("2026-11-18T13:35:00Z", "2026-11-20T13:35:00Z")
    assert "retention (2 d 00 h" in " ".join(
        api("/api/stats/percentile?window=3d", status=400)["window"]
    )


def test_without_samples_in_the_window_the_values_are_null(api, history, monkeypatch) -> None:
    monkeypatch.setattr(timezone, "now", lambda: NOW + timedelta(days=5))
    body = api("/api/stats/percentile?iface=eth0&window=1d")
    assert (body["buckets"], body["bps"]) == (0, {"rx": None, "tx": None, "total": None})


def test_nearest_rank_in_exact_decimals() -> None:
    # 99.9 / 100 * 1000 in binary floating point is 999.0000000000001: a float ceil would
    # pick the 1000th.
    assert nearest_rank([float(v) for v in range(1000)], Decimal("99.9")) == 998.0
    assert nearest_rank([float(v) for v in range(8640)], Decimal("95")) == 8207.0
    assert nearest_rank([5.0, 1.0, 4.0, 2.0, 3.0], Decimal("50")) == 3.0
    assert nearest_rank([5.0, 1.0, 4.0, 2.0, 3.0], Decimal("100")) == 5.0
    assert nearest_rank([5.0, 1.0, 4.0, 2.0, 3.0], Decimal("0.1")) == 1.0
    assert nearest_rank([], Decimal("95")) is None


@pytest.mark.parametrize(
    ("query", "parameter", "words"),
    [
        (
            "window=31d",
            "window",
            "longer than the minute tier's retention (30 d 00 h, NETMETRICS_RETENTION_MINUTES)",
        ),
        ("window=7x", "window", "not a duration"),
        ("window=0m", "window", "must be longer than 0"),
        ("window=7m", "window", "a whole number of buckets"),
        ("p=0", "p", "above 0 and at most 100"),
        ("p=100.5", "p", "above 0 and at most 100"),
        ("p=ninety", "p", "valid number"),
        ("bucket=7m", "bucket", "whole minutes that divide an hour"),
        ("bucket=90s", "bucket", "whole minutes that divide an hour"),
        ("bucket=2h", "bucket", "whole minutes that divide an hour"),
        ("bucket=", "bucket", "may not be blank"),
        ("iface=nope0", "iface", "unknown interface 'nope0'"),
    ],
)
def test_bad_queries_are_400s_that_say_why(api, history, query, parameter, words) -> None:
    body = api(f"/api/stats/percentile?{query}", status=400)
    assert words in " ".join(body[parameter])
