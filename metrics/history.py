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

from bpf.classes import CLASSES, COUNTER_NAMES, counter_name
from metrics.models import HourRollup, MinuteRollup, Sample, peak_values

STEPS: dict[str, timedelta] = {
    "1s": timedelta(seconds=1),
    "1m": MinuteRollup.STEP,
    "1h": HourRollup.STEP,
}
TIER = {"1s": Sample, "1m": MinuteRollup, "1h": HourRollup}
RETENTION = {"1s": "samples", "1m": "minutes", "1h": "hours"}
AUTO_POINTS = 1500
MAX_POINTS = 20000

_PREFIXES = {cls: "" if cls == "total" else f"{cls}_" for cls in CLASSES}
FIELDS: tuple[str, ...] = (
    *(
        f"{prefix}{rate}"
        for prefix in _PREFIXES.values()
        for rate in ("bandwidth_bps", "packets_per_sec")
    ),
    "peak_bandwidth_bps",
    "peak_packets_per_sec",
)
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


def _rates(row: dict, seconds: float, directions: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for cls, prefix in _PREFIXES.items():
        octets = sum(row[counter_name(d, cls, "bytes")] for d in directions)
        packets = sum(row[counter_name(d, cls, "packets")] for d in directions)
        out[f"{prefix}bandwidth_bps"] = octets * 8 / seconds
        out[f"{prefix}packets_per_sec"] = packets / seconds
    return out


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
    directions = DIRECTIONS[direction]
    peaks = _peak_columns(direction)
    model = TIER[step]
    raw = model is Sample
    columns = [*COUNTER_NAMES, "start", "elapsed" if raw else "seconds"]
    if not raw:
        columns += list(peaks.values())
    rows = model.objects.filter(
        interface=interface, start__gte=datetime.fromtimestamp(first, UTC), start__lt=until
    ).values(*columns)
    for row in rows:
        seconds = row["elapsed" if raw else "seconds"]
        values = _rates(row, seconds, directions)
        if raw:
            own = peak_values(row, seconds)
            values |= {field: own[column] for field, column in peaks.items()}
        else:
            values |= {field: row[column] for field, column in peaks.items()}
        # A late tick's sample covers more than one second: each of them gets its rate.
        span = max(1, round(seconds)) if raw else 1
        index = (int(row["start"].timestamp()) - first) // length
        for i in range(index, min(index + span, count)):
            for name in wanted:
                series[name][i] = values[name]
    return History(step, timestamps, series)
