"""The value of each rate metric of AlertRule over one row of counters: a sample as the sampler
has just written it, or an hour rollup for a baseline. One definition for both, so that a
baseline is the same quantity as the value compared with it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bpf.classes import DIRECTIONS
from metrics.rates import per_second, rate

Counters = Mapping[str, int]
RX, TX = ("rx",), ("tx",)


def _traffic(directions: tuple[str, ...], unit: str) -> Callable[[Counters, float], float]:
    return lambda counters, seconds: rate(counters, directions, "total", unit, seconds)


def _flags(cls: str) -> Callable[[Counters, float], float]:
    """Packets of a TCP flag class per second, both directions (a scan or flood shows in either)."""
    return lambda counters, seconds: rate(counters, DIRECTIONS, cls, "packets", seconds)


def _counter(name: str) -> Callable[[Counters, float], float]:
    return lambda counters, seconds: per_second(counters[name], seconds)


# metric -> its value per second over a row's counters and the seconds they were counted in.
RATES: dict[str, Callable[[Counters, float], float]] = {
    "rx_bps": _traffic(RX, "bytes"),
    "tx_bps": _traffic(TX, "bytes"),
    "total_bps": _traffic(DIRECTIONS, "bytes"),
    "rx_pps": _traffic(RX, "packets"),
    "tx_pps": _traffic(TX, "packets"),
    "total_pps": _traffic(DIRECTIONS, "packets"),
    "retransmit_rate": _counter("tcp_retransmits"),
    "rst_rate": _flags("rst"),
    "syn_rate": _flags("syn"),
    "flows_dropped": _counter("flows_dropped"),
}


def rate_of(metric: str, counters: Counters, seconds: float) -> float:
    return RATES[metric](counters, seconds)
