"""Per-second rates from counts over the seconds measured: the one definition, in Python and SQL.

A rate is a count over the real seconds it was counted in (never an assumed 1 s), in bits for
bytes. The same rule runs in Python (a sample's rates, a summary's average, the admin's columns,
live flows) and in SQL, where history and peaks compute it per row so that rows arrive as the
finished floats. A count over no time is a rate of 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db.models import ExpressionWrapper, F, FloatField
from django.db.models.expressions import Combinable

from bpf.classes import counter_name

# The API's name of each unit's rate, as in bandwidth_bps and tcp_packets_per_sec.
RATE_NAMES: dict[str, str] = {"bytes": "bandwidth_bps", "packets": "packets_per_sec"}
_SCALE = {"bytes": 8, "packets": 1}  # bits per byte; a packet is a packet


def per_second(count: float, seconds: float, unit: str = "packets") -> float:
    """count (of unit) per second over seconds: bits per second for bytes."""
    return count * _SCALE[unit] / seconds if seconds else 0.0


def bandwidth_bps(byte_count: float, seconds: float) -> float:
    return per_second(byte_count, seconds, "bytes")


def count(counters: Mapping[str, int], directions: Iterable[str], cls: str, unit: str) -> int:
    """One class's count of unit, summed over directions, out of a row of counters."""
    return sum(counters[counter_name(d, cls, unit)] for d in directions)


def rate(
    counters: Mapping[str, int], directions: Iterable[str], cls: str, unit: str, seconds: float
) -> float:
    return per_second(count(counters, directions, cls, unit), seconds, unit)


class DatabaseFloat(FloatField):
    """A float that the database already returns as a float.

    Django converts every FloatField expression's value with float() in Python, one call per
    value: for an hour at step=1s that is 79,200 calls, a third of the request's time.
    """

    def get_internal_type(self) -> str:
        return "DatabaseFloat"


def sql_per_second(count: Combinable, seconds: Combinable, unit: str = "packets") -> Combinable:
    """per_second as SQL over one row (rows measured no time do not exist: no zero check)."""
    scaled = count * _SCALE[unit] if _SCALE[unit] != 1 else count
    return ExpressionWrapper(scaled / seconds, output_field=DatabaseFloat())


def sql_count(directions: Iterable[str], cls: str, unit: str) -> Combinable:
    """count as SQL: the integer sum of the directions' columns."""
    first, *rest = (F(counter_name(d, cls, unit)) for d in directions)
    return sum(rest, first)


def sql_rate(directions: Iterable[str], cls: str, unit: str, seconds: Combinable) -> Combinable:
    return sql_per_second(sql_count(directions, cls, unit), seconds, unit)
