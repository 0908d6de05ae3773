"""Percentiles of round-trip times from the log2 histograms the kernel side counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bpf.classes import RTT_NAMES


def rtt_histogram(counts: Mapping[str, int | None]) -> list[int]:
    """The histogram's buckets, in order, out of a row of counters."""
    return [counts[name] or 0 for name in RTT_NAMES]


def percentile_us(histogram: Sequence[int], q: float) -> float | None:
    """The q-th percentile (0-100) in microseconds, to a factor of two: the upper edge of the
    log2 bucket that holds it (bucket k holds [2^k, 2^(k+1)) us). None without RTT samples."""
    total = sum(histogram)
    if not total:
        return None
    rank = q / 100 * total
    seen = 0
    for k, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return float(2 ** (k + 1))
    return float(2 ** len(histogram))


class RttPercentiles:
    """rtt_p50_us and rtt_p99_us of an `rtt` histogram, for the answers that serve them."""

    if TYPE_CHECKING:  # read-only here: a dataclass field in Summary, a cached_property in Snapshot

        @property
        def rtt(self) -> Sequence[int]: ...

    @property
    def rtt_p50_us(self) -> float | None:
        return percentile_us(self.rtt, 50)

    @property
    def rtt_p99_us(self) -> float | None:
        return percentile_us(self.rtt, 99)
