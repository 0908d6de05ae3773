"""Top talkers: what the API, the live WebSocket and the admin say about flows.

A window's top list sums each flow's rows of FlowMinute (each minute's top flows) in SQL; the
live table is the sampler's LiveFlows row of a run, as it wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import F, Sum

from bpf.flows import COUNT_FIELDS, FlowCounts, FlowKey, flow_fields
from metrics.models import FlowMinute, LiveFlows, MinuteRollup, SamplerRun, Series
from metrics.tiers import tier_plan

PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
ENDS = FlowKey._fields  # what identifies a flow
# Each count's sum over a flow's minutes. Annotations may not reuse the model's field names.
SUMS = {f"sum_{name}": Sum(name) for name in COUNT_FIELDS}
# Top lists by either total; ties go to the other total, then to the flow's ends: a stable order.
ORDERS = {"bytes": ("-bytes", "-packets", *ENDS), "packets": ("-packets", "-bytes", *ENDS)}


def protocol_name(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


@dataclass(frozen=True)
class TopFlows:
    interface: str
    window: str
    since: datetime
    until: datetime
    by: str
    limit: int
    flow_table: int
    flows_dropped: int
    flows: list[dict[str, Any]]


def _flows_dropped(series: Series, since: datetime, until: datetime) -> int:
    """A counter of every sample and rollup: read from the coarsest exact tier, as summaries."""
    return sum(
        tier.rows(series, lo, hi).aggregate(dropped=Sum("flows_dropped"))["dropped"] or 0
        for tier, lo, hi in tier_plan(since, until)
    )


def top_flows(
    series: Series, window: str, since: datetime, until: datetime, by: str, limit: int
) -> TopFlows:
    """The flows with the most bytes (or packets) in the minutes that overlap [since, until).

    The minute holding ``since`` counts whole: its flows are stored per minute only.
    """
    since = MinuteRollup.bucket_start(since)
    rows = (
        FlowMinute.objects.filter(**series.filter(), start__gte=since, start__lt=until)
        .values(*ENDS)
        .annotate(
            **SUMS,
            packets=Sum(F("rx_packets") + F("tx_packets")),
            bytes=Sum(F("rx_bytes") + F("tx_bytes")),
        )
        .order_by(*ORDERS[by])[:limit]
    )
    flows = []
    for row in rows:
        counts = FlowCounts(*(row[alias] for alias in SUMS))
        key = FlowKey(*(row[end] for end in ENDS))
        flows.append(flow_fields(key, counts) | {"packets": counts.packets, "bytes": counts.bytes})
    run = SamplerRun.objects.latest_for(series.interface, series.host_id)
    flow_table = run.flow_table if run else 0
    dropped = _flows_dropped(series, since, until)
    return TopFlows(series.interface, window, since, until, by, limit, flow_table, dropped, flows)


@dataclass(frozen=True)
class LiveTable:
    """A run's live flows; empty while flows are off or before the sampler writes them."""

    interface: str
    flow_table: int
    timestamp: datetime | None = None
    seconds: float = 0.0
    dropped: int = 0
    flows: list[dict[str, Any]] = field(default_factory=list)
    windows: tuple[int, ...] = LiveFlows.WINDOWS  # of the rates, in their lists' order


def _live_table(run: SamplerRun, live: LiveFlows | None) -> LiveTable:
    if live is None:
        return LiveTable(run.interface, run.flow_table)
    return LiveTable(
        run.interface, run.flow_table, live.timestamp, live.seconds, live.dropped, live.flows
    )


def live_tables(runs: Iterable[SamplerRun]) -> dict[int, LiveTable]:
    """Each run's live table by run pk, in one query for all of them."""
    runs = list(runs)
    stored = LiveFlows.objects.in_bulk([run.pk for run in runs if run.flow_table])
    return {run.pk: _live_table(run, stored.get(run.pk)) for run in runs}
