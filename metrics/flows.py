"""The sampler's flows: each interval's harvest of the kernel's flow table (bpf/flows.py) turned
into the live top-talkers table (LiveFlows) and the top flows of each minute (FlowMinute).

All of it is the sampler's memory: the last 40 seconds of harvests, running sums over the
windows iftop shows (2, 10 and 40 seconds), and the minutes not yet written. The web process
only reads what this writes.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bpf.flows import COUNT_FIELDS, Counts, decode_key
from metrics.models import FlowMinute, LiveFlows, MinuteRollup, SamplerRun

WINDOWS: tuple[int, ...] = (2, 10, 40)  # seconds, as iftop's columns

Harvest = Callable[[], Mapping[bytes, Counts]]
Sums = dict[bytes, list[int]]


@dataclass
class Interval:
    flows: Mapping[bytes, Counts]
    elapsed: float
    dropped: int


def _add(sums: Sums, flows: Mapping[bytes, Counts], sign: int = 1) -> None:
    for key, counts in flows.items():
        total = sums.get(key)
        if total is None:
            sums[key] = list(counts)
            continue
        for i, count in enumerate(counts):
            total[i] += sign * count
        if sign < 0 and not any(total):
            del sums[key]


def flow_fields(key: bytes, counts: Iterable[int]) -> dict[str, Any]:
    """A flow's columns: its key decoded, and rx/tx packets and bytes."""
    return {**decode_key(key)._asdict(), **dict(zip(COUNT_FIELDS, counts, strict=True))}


class FlowTracker:
    """Keeps a run's flows: the live windows, and the minutes until they are written.

    `harvest` empties the kernel's table (TrafficCounter.harvest_flows). `top` flows are kept a
    minute by bytes and again by packets, and `top` rows make the live table.
    """

    def __init__(self, run: SamplerRun, harvest: Harvest, top: int, interval: float) -> None:
        self.run = run
        self.harvest = harvest
        self.top = top
        # Windows in intervals: 2, 10 and 40 of them at the default 1 s.
        self.spans = [max(1, round(seconds / interval)) for seconds in WINDOWS]
        self.recent: deque[Interval] = deque()
        self.sums: list[Sums] = [{} for _ in WINDOWS]
        self.minutes: dict[datetime, Sums] = {}
        self.dropped_total = 0  # the run's cumulative flows_dropped, as last added

    def add(
        self, flows: Mapping[bytes, Counts], dropped_total: int, end: datetime, elapsed: float
    ) -> None:
        """One interval's harvest, which ended at `end` and lasted `elapsed` seconds."""
        self.recent.append(Interval(flows, elapsed, dropped_total - self.dropped_total))
        self.dropped_total = dropped_total
        for sums, span in zip(self.sums, self.spans, strict=True):
            _add(sums, flows)
            if len(self.recent) > span:  # the interval leaving this window
                _add(sums, self.recent[-span - 1].flows, -1)
        if len(self.recent) > self.spans[-1]:
            self.recent.popleft()
        # A minute holds the intervals that started in it, as its MinuteRollup does.
        minute = MinuteRollup.bucket_start(end - timedelta(seconds=elapsed))
        _add(self.minutes.setdefault(minute, {}), flows)

    def live_rows(self) -> list[dict[str, Any]]:
        """The top flows by bytes over 2 s, then 10 s, then 40 s, with their rates."""
        # Never 0 in practice (monotonic time moves between ticks); 1 s keeps a rate finite.
        seconds = [sum(i.elapsed for i in list(self.recent)[-span:]) or 1.0 for span in self.spans]

        def rank(key: bytes) -> tuple[int, ...]:
            return tuple(sums[key][1] + sums[key][3] if key in sums else 0 for sums in self.sums)

        rows = []
        for key in heapq.nlargest(self.top, self.sums[-1], key=rank):
            row = flow_fields(key, self.sums[-1][key])
            windows = [sums.get(key, (0, 0, 0, 0)) for sums in self.sums]
            for direction, offset in (("rx", 0), ("tx", 2)):
                row[f"{direction}_bps"] = [
                    8 * counts[offset + 1] / s for counts, s in zip(windows, seconds, strict=True)
                ]
                row[f"{direction}_pps"] = [
                    counts[offset] / s for counts, s in zip(windows, seconds, strict=True)
                ]
            rows.append(row)
        return rows

    def save(self, timestamp: datetime, final: bool = False) -> list[datetime]:
        """Write the live table, and the minutes before timestamp's (all of them when final).

        Returns the minutes written: the caller forgets them once the transaction commits.
        """
        LiveFlows.objects.update_or_create(
            run=self.run,
            defaults={
                "timestamp": timestamp,
                "seconds": sum(i.elapsed for i in self.recent),
                "dropped": sum(i.dropped for i in self.recent),
                "flows": self.live_rows(),
            },
        )
        current = MinuteRollup.bucket_start(timestamp)
        done = [minute for minute in self.minutes if final or minute < current]
        FlowMinute.objects.bulk_create(
            FlowMinute(interface=self.run.interface, start=minute, **fields)
            for minute in done
            for fields in self.minute_top(self.minutes[minute])
        )
        return done

    def forget(self, minutes: Iterable[datetime]) -> None:
        for minute in minutes:
            del self.minutes[minute]

    def minute_top(self, sums: Sums) -> list[dict[str, Any]]:
        """A minute's top flows by bytes, and by packets: one row each, at most 2 x top."""
        by_bytes = heapq.nlargest(self.top, sums, key=lambda key: sums[key][1] + sums[key][3])
        by_packets = heapq.nlargest(self.top, sums, key=lambda key: sums[key][0] + sums[key][2])
        keys = dict.fromkeys(by_bytes + by_packets)
        return [flow_fields(key, sums[key]) for key in keys]
