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

from django.conf import settings
from django.db.models import ExpressionWrapper, F, FloatField

from bpf.classes import RTT_NAMES, counter_name
from metrics.models import HourRollup, MinuteRollup, Sample
from metrics.rtt import percentile_us
from metrics.snapshot import FIELD_PREFIXES

STEPS: dict[str, timedelta] = {
    "1s": timedelta(seconds=1),
    "1m": MinuteRollup.STEP,
    "1h": HourRollup.STEP,
}
TIER = {"1s": Sample, "1m": MinuteRollup, "1h": HourRollup}
RETENTION = {"1s": "samples", "1m": "minutes", "1h": "hours"}
AUTO_POINTS = 1500
MAX_POINTS = 20000

# Percentiles of each step's RTT histogram, computed in Python from its buckets.
RTT_FIELDS = {"rtt_p50_us": 50, "rtt_p99_us": 99}
FIELDS: tuple[str, ...] = (
    *(
        f"{prefix}{rate}"
        for prefix in FIELD_PREFIXES.values()
        for rate in ("bandwidth_bps", "packets_per_sec")
    ),
    "peak_bandwidth_bps",
    "peak_packets_per_sec",
    "tcp_retransmits",  # per second
    *RTT_FIELDS,
)
# The headline series: what a history chart draws unless it asks for more.
DEFAULT_FIELDS = ("bandwidth_bps", "packets_per_sec", "peak_bandwidth_bps", "peak_packets_per_sec")
DIRECTIONS = {"rx": ("rx",), "tx": ("tx",), "both": ("rx", "tx")}


def auto_step(since: datetime, until: datetime, now: datetime) -> str:
    """The finest step giving at most about AUTO_POINTS points whose tier still holds `since`."""
    for step, length in STEPS.items():
        kept = now - settings.NETMETRICS_RETENTION[RETENTION[step]]
        if (until - since) / length <= AUTO_POINTS and since >= kept:
            return step
    return "1h"


def point_count(since: datetime, until: datetime, step: str) -> int:
    return math.ceil((until - since) / STEPS[step])


@dataclass(frozen=True)
class History:
    step: str
    timestamps: list[int]  # unix seconds of each step's start
    series: dict[str, list[float | None]]


class DatabaseFloat(FloatField):
    """A float that the database already returns as a float.

    Django converts every FloatField expression's value with float() in Python, one call per
    value: for an hour at step=1s that is 79,200 calls, a third of the request's time.
    """

    def get_internal_type(self) -> str:
        return "DatabaseFloat"


def _rate_expressions(raw: bool, direction: str) -> dict[str, ExpressionWrapper | F]:
    """Every field as SQL over one row: the database does the per-row arithmetic.

    Computing 22 rates per row in Python (and building a dict of 40 counters for it) cost more
    than 100 ms for an hour at step=1s; as expressions, the rows arrive as the finished floats.
    The operations are those of peak_values: the integer sum of the directions' counters,
    times 8 for bits, divided by the seconds measured; a raw sample's peak is its own rate.
    """
    seconds = F("elapsed" if raw else "seconds")
    directions = DIRECTIONS[direction]
    units = {"bandwidth_bps": "bytes", "packets_per_sec": "packets"}

    def rate(cls: str, unit: str) -> ExpressionWrapper:
        count = sum(
            (F(counter_name(d, cls, unit)) for d in directions[1:]),
            F(counter_name(directions[0], cls, unit)),
        )
        if unit == "bytes":
            count = count * 8
        return ExpressionWrapper(count / seconds, output_field=DatabaseFloat())

    expressions: dict[str, ExpressionWrapper | F] = {
        f"{prefix}{rate_name}": rate(cls, unit)
        for cls, prefix in FIELD_PREFIXES.items()
        for rate_name, unit in units.items()
    }
    expressions["tcp_retransmits"] = ExpressionWrapper(
        F("tcp_retransmits") * 1.0 / seconds, output_field=DatabaseFloat()
    )
    for field, column in _peak_columns(direction).items():
        expressions[field] = rate("total", units[field.removeprefix("peak_")]) if raw else F(column)
    return expressions


def _peak_columns(direction: str) -> dict[str, str]:
    """API peak field -> rollup column, for a direction choice."""
    prefix = "" if direction == "both" else f"{direction}_"
    return {f"peak_{rate}": f"{prefix}peak_{rate}" for rate in ("bandwidth_bps", "packets_per_sec")}


def history(
    interface: str,
    since: datetime,
    until: datetime,
    step: str,
    direction: str,
    fields: Iterable[str],
) -> History:
    length = int(STEPS[step].total_seconds())
    first = int(since.timestamp()) // length * length
    count = math.ceil((until.timestamp() - first) / length)
    timestamps = [first + i * length for i in range(count)]
    wanted = list(fields)
    series: dict[str, list[float | None]] = {name: [None] * count for name in wanted}
    model = TIER[step]
    raw = model is Sample
    every = _rate_expressions(raw, direction)
    expressions = {name: every[name] for name in wanted if name not in RTT_FIELDS}
    rtt_wanted = [name for name in wanted if name in RTT_FIELDS]
    rows = model.objects.filter(
        interface=interface, start__gte=datetime.fromtimestamp(first, UTC), start__lt=until
    ).values_list(
        "start",
        "elapsed" if raw else "seconds",
        *expressions.values(),
        *(RTT_NAMES if rtt_wanted else ()),
    )
    columns = [series[name] for name in (*expressions, *rtt_wanted)]
    for start, seconds, *values in rows:
        if rtt_wanted:
            histogram = values[len(expressions) :]
            values = values[: len(expressions)]
            values += [percentile_us(histogram, RTT_FIELDS[name]) for name in rtt_wanted]
        # A late tick's sample covers more than one second: each of them gets its rate.
        span = max(1, round(seconds)) if raw else 1
        index = (int(start.timestamp()) - first) // length
        for i in range(index, min(index + span, count)):
            for column, value in zip(columns, values, strict=True):
                column[i] = value
    return History(step, timestamps, series)
