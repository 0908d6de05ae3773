"""Carrying samples from the database to this web process's WebSocket clients.

The sampler is another process and the default set-up has no Redis, so each web process runs
one relay task (while it has WebSocket clients) that looks for newly written samples a few times
a second and sends them to the in-memory channel layer's group. Rows are append-only and a run's
``last_sample`` moves in the same transaction as its counters, so the totals sent with each
sample are exactly those at the time it was written, whatever the database's isolation level.
Each run's live flows are read once a poll, and go with its newest sample.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError
from django.utils import timezone

from bpf.classes import ALL_COUNTER_NAMES
from metrics.api.serializers import LiveFlowsSerializer, RealtimeSerializer
from metrics.models import SamplerRun
from metrics.snapshot import Snapshot
from metrics.talkers import LiveTable, live_tables

log = logging.getLogger("netmetrics.relay")

# This process's group: its relay feeds its own clients only. Under a shared channel layer
# (REDIS_URL) every web process runs a relay, and one group for all would deliver each sample
# once per web process.
GROUP = f"samples.{os.getpid()}"
POLL_SECONDS = 0.2
# Runs without a sample for this long are not polled; one that wakes up again is picked up.
ACTIVE_WINDOW = timedelta(minutes=5)


def sample_message(snapshot: Snapshot, flows: LiveTable | None) -> dict[str, Any]:
    """One live message: the realtime endpoint's JSON, its type, and /api/flows/live's JSON
    (None on a sample that a newer one of the same run follows in the same poll)."""
    return {
        "type": "sample",
        **RealtimeSerializer(snapshot).data,
        "flows": None if flows is None else LiveFlowsSerializer(flows).data,
    }


def latest_message(interface: str | None, host: UUID | None) -> dict[str, Any] | None:
    run = SamplerRun.objects.latest_for(interface, host)
    if run is None or run.last_sample is None:
        return None
    return sample_message(Snapshot.latest(run, timezone.now()), live_tables([run])[run.pk])


class SampleRelay:
    def __init__(self) -> None:
        self.subscribers = 0
        self.task: asyncio.Task[None] | None = None
        self.seen: dict[int, int | None] = {}  # run pk -> pk of its last sample already sent
        self.since: datetime = timezone.now()

    async def subscribe(self) -> None:
        self.subscribers += 1
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.since = timezone.now()
            self.seen = await database_sync_to_async(self._current)()
            self.task = loop.create_task(self._run())

    def unsubscribe(self) -> None:
        self.subscribers = max(0, self.subscribers - 1)

    async def _run(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "settings.CHANNEL_LAYERS has a default layer"
        while self.subscribers > 0:
            try:
                messages = await database_sync_to_async(self._new_messages)()
            except DatabaseError as exc:  # locked or briefly unavailable: try again next poll
                log.warning("relay: cannot read new samples (%s)", exc)
                messages = []
            for message in messages:
                await layer.group_send(GROUP, {"type": "sample.message", "message": message})
            await asyncio.sleep(POLL_SECONDS)

    def _active_runs(self) -> list[SamplerRun]:
        recent = timezone.now() - ACTIVE_WINDOW
        return list(
            SamplerRun.objects.filter(last_sample__timestamp__gte=recent).select_related(
                "last_sample", "host"
            )
        )

    def _current(self) -> dict[int, int | None]:
        return {run.pk: run.last_sample_id for run in self._active_runs()}

    def _new_messages(self) -> list[dict[str, Any]]:
        now = timezone.now()
        out: list[tuple[datetime, dict[str, Any]]] = []
        runs = [run for run in self._active_runs() if self.seen.get(run.pk) != run.last_sample_id]
        tables = live_tables(runs)
        for run in runs:
            samples = run.samples.filter(pk__lte=run.last_sample_id).order_by("-pk")
            if run.pk in self.seen:
                samples = samples.filter(pk__gt=self.seen[run.pk])
            else:
                samples = samples.filter(timestamp__gte=self.since)
            counters = run.counters()
            running = run.is_running(now)
            flows: LiveTable | None = tables[run.pk]  # the run's flows now: its newest sample's
            # Newest first: each older sample's totals are the newer totals minus its successor.
            for sample in samples:
                snapshot = Snapshot(sample, dict(counters), run, running)
                out.append((sample.timestamp, sample_message(snapshot, flows)))
                flows = None
                for name in ALL_COUNTER_NAMES:
                    counters[name] -= getattr(sample, name)
            self.seen[run.pk] = run.last_sample_id
        return [message for _, message in sorted(out, key=lambda item: item[0])]


relay = SampleRelay()
