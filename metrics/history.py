"""Rates over time for charts: one value per step, from the tier that has that step.

Columnar, so a chart library takes the arrays as they are. A step with no sample (the sampler
was not running) is None, not zero and not interpolated. Rates are over the seconds actually
measured inside the step, so a step the sampler covered only in part is not diluted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import F
from django.db.models.expressions import Combinable

from bpf.classes import RTT_NAMES
from metrics.models import Series
from metrics.rates import RATE_NAMES, sql_per_second, sql_rate
from metrics.rtt import percentile_us
from metrics.snapshot import FIELD_PREFIXES, UNITS
from metrics.tiers import BY_NAME, TIERS, Tier

AUTO_POINTS = 1500
DEFAULT_RANGE = timedelta(hours=1)
MAX_POINTS = 20000

# Percentiles of each step's RTT histogram, computed in Python from its buckets.
RTT_FIELDS = {"rtt_p50_us": 50, "rtt_p99_us": 99}
FIELDS: tuple[str, ...] = (
    *(f"{prefix}{RATE_NAMES[unit]}" for prefix in FIELD_PREFIXES.values() for unit in UNITS),
    "peak_bandwidth_bps",
    "peak_packets_per_sec",
    "tcp_retransmits",  # per second
    *RTT_FIELDS,
)
# The headline series: what a history chart draws unless it asks for more.
DEFAULT_FIELDS = ("bandwidth_bps", "packets_per_sec", "peak_bandwidth_bps", "peak_packets_per_sec")
DIRECTIONS = {"rx": ("rx",), "tx": ("tx",), "both": ("rx", "tx")}


def default_range(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The range asked for, filled in: until defaults to now, since to an hour before until."""
    until = until or now
    return since or until - DEFAULT_RANGE, until


def auto_step(since: datetime, until: datetime, now: datetime) -> str:
    """The finest step giving at most about AUTO_POINTS points whose tier still holds `since`."""
    for tier in TIERS:
        if (until - since) / tier.step <= AUTO_POINTS and since >= tier.kept_since(now):
            return tier.name
    return TIERS[-1].name


def point_count(since: datetime, until: datetime, step: str) -> int:
    return math.ceil((until - since) / BY_NAME[step].step)


@dataclass(frozen=True)
class History:
    step: str
    timestamps: list[int]  # unix seconds of each step's start
    series: dict[str, list[float | None]]


def _rate_expressions(tier: Tier, direction: str) -> dict[str, Combinable]:
    """Every field as SQL over one row: the database does the per-row arithmetic.

    Computing 22 rates per row in Python (and building a dict of 40 counters for it) cost more
    than 100 ms for an hour at step=1s; as expressions, the rows arrive as the finished floats.
    A raw sample's peak is its own rate; a rollup keeps its peaks in columns.
    """
    seconds = F(tier.seconds_field)
    directions = DIRECTIONS[direction]
    expressions: dict[str, Combinable] = {
        f"{prefix}{RATE_NAMES[unit]}": sql_rate(directions, cls, unit, seconds)
        for cls, prefix in FIELD_PREFIXES.items()
        for unit in UNITS
    }
    expressions["tcp_retransmits"] = sql_per_second(F("tcp_retransmits"), seconds)
    column_prefix = "" if direction == "both" else f"{direction}_"
    for unit in UNITS:
        field = f"peak_{RATE_NAMES[unit]}"
        expressions[field] = (
            sql_rate(directions, "total", unit, seconds) if tier.raw else F(column_prefix + field)
        )
    return expressions


def history(
    series: Series,
    since: datetime,
    until: datetime,
    step: str,
    direction: str,
    fields: Iterable[str],
) -> History:
    tier = BY_NAME[step]
    length = int(tier.step.total_seconds())
    first = int(since.timestamp()) // length * length
    count = math.ceil((until.timestamp() - first) / length)
    timestamps = [first + i * length for i in range(count)]
    wanted = list(fields)
    columns_by_name: dict[str, list[float | None]] = {name: [None] * count for name in wanted}
    every = _rate_expressions(tier, direction)
    expressions = {name: every[name] for name in wanted if name not in RTT_FIELDS}
    rtt_wanted = [name for name in wanted if name in RTT_FIELDS]
    rows = tier.rows(series, datetime.fromtimestamp(first, UTC), until).values_list(
        "start",
        tier.seconds_field,
        *expressions.values(),
        *(RTT_NAMES if rtt_wanted else ()),
    )
    columns = [columns_by_name[name] for name in (*expressions, *rtt_wanted)]
    for start, seconds, *values in rows:
        if rtt_wanted:
            histogram = values[len(expressions) :]
            values = values[: len(expressions)]
            values += [percentile_us(histogram, RTT_FIELDS[name]) for name in rtt_wanted]
        # A late tick's sample covers more than one second: each of them gets its rate.
        span = max(1, round(seconds)) if tier.raw else 1
        index = (int(start.timestamp()) - first) // length
        for i in range(index, min(index + span, count)):
            for column, value in zip(columns, values, strict=True):
                column[i] = value
    return History(step, timestamps, columns_by_name)
