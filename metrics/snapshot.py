"""What the realtime endpoint and the live WebSocket say about one sample."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from bpf.classes import CLASSES, counter_name
from metrics import rates
from metrics.models import Sample, SamplerRun
from metrics.rtt import RttPercentiles, rtt_histogram

# The API's field name prefix of each class: "total" is the direction's own bandwidth_bps and
# packets_per_sec; the rest are tcp_bandwidth_bps, tcp_packets_per_sec, ...
FIELD_PREFIXES = {cls: "" if cls == "total" else f"{cls}_" for cls in CLASSES}
UNITS = ("packets", "bytes")


def class_rates(sample: Sample, directions: tuple[str, ...]) -> dict[str, float]:
    """Per-second rates over sample's interval, summed over directions, keyed as in the API."""
    counters = sample.counters()
    return {
        f"{prefix}{rates.RATE_NAMES[unit]}": rates.rate(
            counters, directions, cls, unit, sample.elapsed
        )
        for cls, prefix in FIELD_PREFIXES.items()
        for unit in UNITS
    }


def totals(counters: Mapping[str, int], direction: str) -> dict[str, int]:
    return {
        f"{prefix}{unit}": counters[counter_name(direction, cls, unit)]
        for cls, prefix in FIELD_PREFIXES.items()
        for unit in UNITS
    }


@dataclass(frozen=True)
class Snapshot(RttPercentiles):
    """A sample with its run's cumulative counters as they were when it was written."""

    sample: Sample
    counters: Mapping[str, int]
    run: SamplerRun
    sampler_running: bool

    @classmethod
    def latest(cls, run: SamplerRun, now: datetime) -> Snapshot:
        assert run.last_sample is not None
        return cls(run.last_sample, run.counters(), run, run.is_running(now))

    @property
    def directions(self) -> tuple[str, ...]:
        return self.run.directions

    @property
    def egress(self) -> bool:
        return self.run.egress

    @property
    def interface(self) -> str:
        return self.sample.interface

    @property
    def timestamp(self) -> datetime:
        return self.sample.timestamp

    @cached_property
    def both(self) -> dict[str, float]:
        return class_rates(self.sample, self.directions)

    @cached_property
    def rx(self) -> dict[str, float]:
        return class_rates(self.sample, ("rx",))

    @cached_property
    def tx(self) -> dict[str, float] | None:
        return class_rates(self.sample, ("tx",)) if self.egress else None

    @cached_property
    def totals(self) -> dict[str, dict[str, int] | int | None]:
        return {
            "rx": totals(self.counters, "rx"),
            "tx": totals(self.counters, "tx") if self.egress else None,
            "tcp_retransmits": self.counters["tcp_retransmits"],
        }

    @property
    def tcp_retransmits(self) -> float:
        """Retransmitted segments per second over the sample's interval."""
        return rates.per_second(self.sample.tcp_retransmits, self.sample.elapsed)

    @cached_property
    def rtt(self) -> list[int]:
        return rtt_histogram(self.sample.counters())

    @property
    def total_packets(self) -> int:
        return rates.count(self.counters, self.directions, "total", "packets")

    @property
    def total_bytes(self) -> int:
        return rates.count(self.counters, self.directions, "total", "bytes")
