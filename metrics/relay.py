"""Carrying samples from the database to this web process's WebSocket clients.

The sampler is another process (in a fleet, on another host), so each web process runs one relay
task, while it has WebSocket clients, that learns of newly written samples from the database and
sends them to its own group of the channel layer. How it learns of them depends on the database:

- PostgreSQL: the sampler announces each tick with NOTIFY in the transaction that writes it
  (metrics/announce.py). The relay holds one psycopg 3 connection of its own that LISTENs, and
  on each notification (with those that follow it within a few milliseconds) reads the new
  samples of the runs named, and nothing else: it does not poll. PostgreSQL delivers a
  notification at commit, so the samples named are there to read. On connecting, and on every
  reconnect, it reads every active run once, for what was written while it was not listening.
  A lost connection (PostgreSQL restarting) is one warning, then a reconnect after a growing
  wait; it never ends the web process.
- SQLite (the single-host default) has no NOTIFY, so the relay polls: it reads the active runs'
  newest samples five times a second, one indexed query per active run on a local file.

Rows are append-only and a run's ``last_sample`` moves in the same transaction as its counters,
so the totals sent with each sample are exactly those at the time it was written, whatever the
database's isolation level. Each run's live flows are read once a read, and go with its newest
sample. A database that cannot be read is one warning until it can be again, not one a read.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import DatabaseError, connection
from django.utils import timezone
from psycopg import sql

from alerts.live import alerts_message, open_alert_ids
from bpf.classes import ALL_COUNTER_NAMES
from metrics.announce import CHANNEL, announced_runs, listen_parameters
from metrics.api.serializers import LiveFlowsSerializer, RealtimeSerializer
from metrics.models import SamplerRun
from metrics.snapshot import Snapshot
from metrics.talkers import LiveTable, live_tables

log = logging.getLogger("netmetrics.relay")

# This process's group: its relay feeds its own clients only. Under a shared channel layer
# (REDIS_URL) every web process runs a relay, and one group for all would deliver each sample
# once per web process.
GROUP = f"samples.{os.getpid()}"
POLL_SECONDS = 0.2  # SQLite
# Runs without a sample for this long are not read unless named; one that wakes up again is
# picked up (PostgreSQL: its notification names it).
ACTIVE_WINDOW = timedelta(minutes=5)
# PostgreSQL: notifications that follow the first one within this time are read with it (a
# fleet's samplers write at about the same moment each second); while nothing arrives, the
# listening relay looks whether it still has clients this often; after a failed read it reads
# again this long after; reconnects wait from the first to the second, doubling.
GATHER_SECONDS = 0.005
IDLE_SECONDS = 1.0
REREAD_SECONDS = 1.0
RECONNECT_SECONDS = (0.5, 8.0)


def sample_message(snapshot: Snapshot, flows: LiveTable | None) -> dict[str, Any]:
    """One live message: the realtime endpoint's JSON, its type, and /api/flows/live's JSON
    (None on a sample that a newer one of the same run follows in the same read)."""
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
        self.open_alerts: frozenset[int] = frozenset()  # as last sent (alerts/live.py)
        self.unreadable = False  # a read failed, and was logged; the next success is logged

    async def subscribe(self) -> None:
        self.subscribers += 1
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.since = timezone.now()
            self.seen = await database_sync_to_async(self._current)()
            self.open_alerts = await database_sync_to_async(open_alert_ids)()
            self.task = loop.create_task(self._run())

    def unsubscribe(self) -> None:
        self.subscribers = max(0, self.subscribers - 1)

    async def _run(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "settings.CHANNEL_LAYERS has a default layer"
        if connection.vendor == "postgresql":
            await self._listen(layer)
        else:
            await self._poll(layer)

    async def _poll(self, layer: BaseChannelLayer) -> None:
        while self.subscribers > 0:
            await self._relay(layer, None)
            await asyncio.sleep(POLL_SECONDS)

    async def _listen(self, layer: BaseChannelLayer) -> None:
        """LISTEN and relay what is announced while there are clients; reconnect when the
        connection is lost. The last check of subscribers and the return have no await in
        between, so a client that subscribes meanwhile finds the task running or done."""
        wait = RECONNECT_SECONDS[0]
        lost = False
        while self.subscribers > 0:
            try:
                conn = await psycopg.AsyncConnection.connect(**listen_parameters(), autocommit=True)
                try:  # not `async with`: its rollback on a lost connection logs one more error
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    if lost:
                        log.info("relay: listening to PostgreSQL again")
                    lost, wait = False, RECONNECT_SECONDS[0]
                    await self._follow(layer, conn)
                finally:
                    await conn.close()
            except psycopg.Error as exc:
                if not lost:
                    log.warning(
                        "relay: not listening to PostgreSQL (%s); reconnecting, then reading "
                        "what was written meanwhile",
                        (str(exc).strip() or type(exc).__name__).splitlines()[0],
                    )
                    lost = True
                await asyncio.sleep(wait)
                wait = min(2 * wait, RECONNECT_SECONDS[1])

    async def _follow(self, layer: BaseChannelLayer, conn: psycopg.AsyncConnection) -> None:
        """Read every active run once (what was written before LISTEN), then the runs each
        notification names, while there are clients."""
        wanted: set[int] | None = None  # runs to read; None: every active run
        while self.subscribers > 0:
            if wanted is None or wanted:
                # A failed read is retried as a read of every active run: what the notifications
                # since named is not kept apart from what was read before.
                wanted = set() if await self._relay(layer, wanted) else None
            timeout = REREAD_SECONDS if wanted is None else IDLE_SECONDS
            news = await self._announced(conn, timeout)
            if wanted is not None:
                wanted = None if news is None else wanted | news

    async def _announced(self, conn: psycopg.AsyncConnection, timeout: float) -> set[int] | None:
        """The runs named by the first notification within timeout and those that follow it
        within GATHER_SECONDS (empty: none arrived; None: one did not say which)."""
        payloads = [n.payload async for n in conn.notifies(timeout=timeout, stop_after=1)]
        if payloads:
            payloads += [n.payload async for n in conn.notifies(timeout=GATHER_SECONDS)]
        return announced_runs(payloads)

    async def _relay(self, layer: BaseChannelLayer, runs: set[int] | None) -> bool:
        """Send the new samples of runs (None: of every active run) to this process's group,
        and the open alerts if they changed (alerts/live.py); False when the database could not
        be read (locked, or briefly unavailable)."""
        try:
            messages = await database_sync_to_async(self._new_messages)(runs)
            alerts = await database_sync_to_async(self._alerts_changed)()
        except DatabaseError as exc:
            if not self.unreadable:
                log.warning("relay: cannot read new samples (%s); trying again", exc)
                self.unreadable = True
            return False
        if self.unreadable:
            log.info("relay: reading new samples again")
            self.unreadable = False
        for message in messages:
            await layer.group_send(GROUP, {"type": "sample.message", "message": message})
        if alerts is not None:
            await layer.group_send(GROUP, {"type": "alerts.message", "message": alerts})
        return True

    def _alerts_changed(self) -> dict[str, Any] | None:
        """The banner's message when the open alerts are not those last sent, else None."""
        now_open = open_alert_ids()
        if now_open == self.open_alerts:
            return None
        self.open_alerts = now_open
        return alerts_message()

    def _runs(self, pks: set[int] | None) -> list[SamplerRun]:
        """The runs with these pks; None: the active ones."""
        if pks is None:
            runs = SamplerRun.objects.filter(
                last_sample__timestamp__gte=timezone.now() - ACTIVE_WINDOW
            )
        else:
            runs = SamplerRun.objects.filter(pk__in=pks)
        return list(runs.select_related("last_sample", "host"))

    def _current(self) -> dict[int, int | None]:
        return {run.pk: run.last_sample_id for run in self._runs(None)}

    def _new_messages(self, pks: set[int] | None) -> list[dict[str, Any]]:
        """The samples of these runs (None: of the active ones) not sent yet, oldest first."""
        now = timezone.now()
        out: list[tuple[datetime, dict[str, Any]]] = []
        runs = [run for run in self._runs(pks) if self.seen.get(run.pk) != run.last_sample_id]
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
