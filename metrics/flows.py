"""The sampler's flows: each interval's harvest of the kernel's flow table (bpf/flows.py) turned
into the live top-talkers table (LiveFlows) and the top flows of each minute (FlowMinute).

All of it is the sampler's memory: the last 40 seconds of harvests, running sums over the
windows iftop shows (LiveFlows.WINDOWS: 2, 10 and 40 seconds), and the minutes not yet written.
The web process only reads what this writes, and never imports this module.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import add, sub
from typing import Any

from bpf.flows import NO_TRAFFIC, FlowCounts, decode_key, flow_fields
from metrics import rates
from metrics.models import FlowMinute, LiveFlows, MinuteRollup, SamplerRun

Sums = dict[bytes, FlowCounts]


@dataclass
class Interval:
    flows: Mapping[bytes, FlowCounts]
    elapsed: float
    dropped: int


# Field by field, into a FlowCounts made by tuple.__new__ (not NamedTuple's Python-level __new__
# or a method): these run for every flow of every window each tick, and this keeps them as cheap
# as adding into lists.
def _add(sums: Sums, flows: Mapping[bytes, FlowCounts]) -> None:
    for key, counts in flows.items():
        total = sums.get(key)
        sums[key] = counts if total is None else tuple.__new__(FlowCounts, map(add, total, counts))


def _subtract(sums: Sums, flows: Mapping[bytes, FlowCounts]) -> None:
    """Take out traffic _add put in: a flow with none left is forgotten."""
    for key, counts in flows.items():
        total = tuple.__new__(FlowCounts, map(sub, sums[key], counts))
        if any(total):
            sums[key] = total
        else:
            del sums[key]


def merged(harvests: Iterable[Mapping[bytes, FlowCounts]]) -> Sums:
    """Several interfaces' flows as one host's: a flow seen on two of them counts on both."""
    sums: Sums = {}
    for flows in harvests:
        _add(sums, flows)
    return sums


def _fields(key: bytes, counts: FlowCounts) -> dict[str, Any]:
    return flow_fields(decode_key(key), counts)


class FlowTracker:
    """Keeps a run's flows: the live windows, and the minutes until they are written.

    The sampler adds each interval's harvest of the run's interface (TrafficCounter.harvest_flows).
    `top` flows are kept a minute by bytes and again by packets, and `top` rows make the live
    table.
    """

    def __init__(self, run: SamplerRun, top: int, interval: float) -> None:
        self.run = run
        self.top = top
        # Windows in intervals: 2, 10 and 40 of them at the default 1 s.
        self.spans = [max(1, round(seconds / interval)) for seconds in LiveFlows.WINDOWS]
        self.recent: deque[Interval] = deque()
        self.sums: list[Sums] = [{} for _ in self.spans]
        self.minutes: dict[datetime, Sums] = {}
        self.dropped_total = 0  # the run's cumulative flows_dropped, as last added

    def add(
        self, flows: Mapping[bytes, FlowCounts], dropped_total: int, end: datetime, elapsed: float
    ) -> None:
        """One interval's harvest, which ended at `end` and lasted `elapsed` seconds."""
        self.recent.append(Interval(flows, elapsed, dropped_total - self.dropped_total))
        self.dropped_total = dropped_total
        for sums, span in zip(self.sums, self.spans, strict=True):
            _add(sums, flows)
            if len(self.recent) > span:  # the interval leaving this window
                _subtract(sums, self.recent[-span - 1].flows)
        if len(self.recent) > self.spans[-1]:
            self.recent.popleft()
        # A minute holds the intervals that started in it, as its MinuteRollup does.
        minute = MinuteRollup.bucket_start(end - timedelta(seconds=elapsed))
        _add(self.minutes.setdefault(minute, {}), flows)

    def live_rows(self) -> list[dict[str, Any]]:
        """The top flows by bytes over 2 s, then 10 s, then 40 s, with their rates."""
        # Never 0 in practice (monotonic time moves between ticks); 1 s keeps a rate finite.
        seconds = [sum(i.elapsed for i in list(self.recent)[-span:]) or 1.0 for span in self.spans]

        def rank(key: bytes) -> list[int]:
            return [sums[key].bytes if key in sums else 0 for sums in self.sums]

        rows = []
        for key in heapq.nlargest(self.top, self.sums[-1], key=rank):
            row = _fields(key, self.sums[-1][key])
            windows = [sums.get(key, NO_TRAFFIC) for sums in self.sums]
            for direction in ("rx", "tx"):
                traffic = [getattr(counts, direction) for counts in windows]
                for suffix, unit in (("bps", "bytes"), ("pps", "packets")):
                    row[f"{direction}_{suffix}"] = [
                        rates.per_second(getattr(t, unit), s, unit)
                        for t, s in zip(traffic, seconds, strict=True)
                    ]
            rows.append(row)
        return rows

    def live(self, timestamp: datetime) -> LiveFlows:
        """The run's live table as of timestamp, unsaved: save() writes every run's at once."""
        return LiveFlows(
            run=self.run,
            timestamp=timestamp,
            seconds=sum(i.elapsed for i in self.recent),
            dropped=sum(i.dropped for i in self.recent),
            flows=self.live_rows(),
        )

    def finished(self, timestamp: datetime, final: bool) -> list[datetime]:
        """The minutes before timestamp's (all of them when final): those to write now."""
        current = MinuteRollup.bucket_start(timestamp)
        return [minute for minute in self.minutes if final or minute < current]

    def minute_rows(self, minutes: Iterable[datetime]) -> list[FlowMinute]:
        return [
            FlowMinute(**self.run.series.filter(), start=minute, **fields)
            for minute in minutes
            for fields in self.minute_top(self.minutes[minute])
        ]

    def forget(self, minutes: Iterable[datetime]) -> None:
        for minute in minutes:
            del self.minutes[minute]

    def minute_top(self, sums: Sums) -> list[dict[str, Any]]:
        """A minute's top flows by bytes, and by packets: one row each, at most 2 x top."""
        by_bytes = heapq.nlargest(self.top, sums, key=lambda key: sums[key].bytes)
        by_packets = heapq.nlargest(self.top, sums, key=lambda key: sums[key].packets)
        keys = dict.fromkeys(by_bytes + by_packets)
        return [_fields(key, sums[key]) for key in keys]


def save(
    trackers: Sequence[tuple[FlowTracker, bool]], timestamp: datetime
) -> list[tuple[FlowTracker, list[datetime]]]:
    """Write the trackers' live tables and finished minutes (every minute kept, for a tracker
    marked final), one statement each whatever the number of runs; the minutes written, by
    tracker: forget them once the transaction commits."""
    LiveFlows.objects.bulk_create(
        [tracker.live(timestamp) for tracker, _ in trackers],
        update_conflicts=True,
        unique_fields=["run"],
        update_fields=["timestamp", "seconds", "dropped", "flows"],
    )
    written = [(tracker, tracker.finished(timestamp, final)) for tracker, final in trackers]
    FlowMinute.objects.bulk_create(
        [row for tracker, minutes in written for row in tracker.minute_rows(minutes)]
    )
    return written
