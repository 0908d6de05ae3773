"""What the realtime endpoint and the live WebSocket say about one sample."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from bpf.classes import CLASSES, counter_name
from metrics.models import Sample, SamplerRun
from metrics.rtt import RttPercentiles, rtt_histogram

# The API's field name prefix of each class: "total" is the direction's own bandwidth_bps and
# packets_per_sec; the rest are tcp_bandwidth_bps, tcp_packets_per_sec, ...
FIELD_PREFIXES = {cls: "" if cls == "total" else f"{cls}_" for cls in CLASSES}


def rates(sample: Sample, directions: tuple[str, ...]) -> dict[str, float]:
    """Per-second rates over sample's interval, summed over directions, keyed as in the API."""
    out: dict[str, float] = {}
    for cls, prefix in FIELD_PREFIXES.items():
        packets = sum(getattr(sample, counter_name(d, cls, "packets")) for d in directions)
        octets = sum(getattr(sample, counter_name(d, cls, "bytes")) for d in directions)
        out[f"{prefix}bandwidth_bps"] = octets * 8 / sample.elapsed
        out[f"{prefix}packets_per_sec"] = packets / sample.elapsed
    return out


def totals(counters: Mapping[str, int], direction: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for cls, prefix in FIELD_PREFIXES.items():
        out[f"{prefix}packets"] = counters[counter_name(direction, cls, "packets")]
        out[f"{prefix}bytes"] = counters[counter_name(direction, cls, "bytes")]
    return out


@dataclass(frozen=True)
class Snapshot(RttPercentiles):
    """A sample with its run's cumulative counters as they were when it was written."""

    sample: Sample
    counters: Mapping[str, int]
    egress: bool
    sampler_running: bool

    @classmethod
    def latest(cls, run: SamplerRun, now: datetime) -> Snapshot:
        assert run.last_sample is not None
        return cls(run.last_sample, run.counters(), run.egress, run.is_running(now))

    @property
    def directions(self) -> tuple[str, ...]:
        return ("rx", "tx") if self.egress else ("rx",)

    @property
    def interface(self) -> str:
        return self.sample.interface

    @property
    def timestamp(self) -> datetime:
        return self.sample.timestamp

    @cached_property
    def both(self) -> dict[str, float]:
        return rates(self.sample, self.directions)

    @cached_property
    def rx(self) -> dict[str, float]:
        return rates(self.sample, ("rx",))

    @cached_property
    def tx(self) -> dict[str, float] | None:
        return rates(self.sample, ("tx",)) if self.egress else None

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
        return self.sample.tcp_retransmits / self.sample.elapsed

    @cached_property
    def rtt(self) -> list[int]:
        return rtt_histogram(self.sample.counters())

    @property
    def total_packets(self) -> int:
        return sum(self.counters[counter_name(d, "total", "packets")] for d in self.directions)

    @property
    def total_bytes(self) -> int:
        return sum(self.counters[counter_name(d, "total", "bytes")] for d in self.directions)
