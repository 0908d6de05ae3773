"""The live dashboard's WebSocket: the latest sample on connect, then every new one."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import DatabaseError

from access.live import NOT_LOGGED_IN, admission
from alerts.live import alerts_message
from metrics.api.serializers import InterfaceQuerySerializer
from metrics.relay import GROUP, latest_message, relay

log = logging.getLogger("netmetrics.live")

DATABASE_UNAVAILABLE = 4503  # as HTTP's 503: the client may try again


def _validate(query: dict[str, str]) -> tuple[str | None, str | None, Any]:
    """The host id (as the messages give it) and interface asked for, or the errors."""
    params = InterfaceQuerySerializer(data=query)
    if params.is_valid():
        host = params.validated_data.get("host")
        return str(host.pk) if host else None, params.validated_data.get("iface"), None
    return None, None, params.errors


class MetricsConsumer(AsyncJsonWebsocketConsumer):
    """ws://HOST/ws/metrics/[?host=ID|NAME][&iface=NAME]: one interface's samples, each once,
    oldest first.

    Without iface, the connection stays on the interface (and host) of the first sample it
    sends: the one with the newest sample at connect (or, with none yet, the first written
    after). It does not follow whichever interface was sampled last: with several interfaces
    sampled every second that would change with every message, and a live view would flap
    between them. A client that wants another interface reconnects with ?iface=.

    Only for viewers and clients that need no login (access/live.py): anyone else gets an error
    message and close code 4401 (no login) or 4403 (logged in, not a viewer), and no sample; a
    connection admitted by its login is closed so, with 4401, when that session logs out. A foreign
    Origin is refused at the handshake (HTTP 403, netmetrics/asgi.py). A database that cannot
    answer gets an error message and 4503.
    """

    host: str | None = None
    iface: str | None = None
    last_timestamp: datetime | None = None
    subscribed = False
    session_group: str | None = None

    async def connect(self) -> None:
        await self.accept()
        try:
            await self.admit()
        except DatabaseError as exc:
            # Locked, gone, unreadable: say so and close; the dashboard retries with back-off.
            log.warning("live feed: the database cannot answer: %s", exc)
            await self.leave_groups()
            await self.refuse(
                DATABASE_UNAVAILABLE,
                f"the database cannot answer right now ({exc}); try again shortly",
            )

    async def admit(self) -> None:
        """Check who it is and what it asks for, subscribe, and send the latest sample."""
        admitted = await database_sync_to_async(admission)(self.scope)
        if admitted.code is not None:
            await self.refuse(admitted.code, admitted.detail)
            return
        if admitted.group is not None:
            self.session_group = admitted.group
            await self.channel_layer.group_add(admitted.group, self.channel_name)
        query = {
            k: v[-1] for k, v in parse_qs(self.scope["query_string"].decode("latin-1")).items()
        }
        self.host, self.iface, errors = await database_sync_to_async(_validate)(query)
        if errors:
            await self.refuse(4400, errors)
            return
        # Subscribe before reading the latest sample: a sample written in between then arrives
        # twice rather than never, and the timestamp check below drops the repeat.
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await relay.subscribe()
        self.subscribed = True
        host = None if self.host is None else UUID(self.host)
        latest = await database_sync_to_async(latest_message)(self.iface, host)
        if latest is not None:
            await self.deliver(latest)
        alerts = await database_sync_to_async(alerts_message)()
        if alerts["alerts"]:  # the banner's alerts; later changes come as they happen
            await self.send_json(alerts)

    async def disconnect(self, code: int) -> None:
        await self.leave_groups()

    async def leave_groups(self) -> None:
        if self.session_group is not None:
            await self.channel_layer.group_discard(self.session_group, self.channel_name)
            self.session_group = None
        if self.subscribed:
            self.subscribed = False
            relay.unsubscribe()
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def session_ended(self, event: dict[str, Any]) -> None:
        """Its session logged out (access/live.py): no sample may follow, so leave first."""
        await self.leave_groups()
        await self.refuse(NOT_LOGGED_IN, "logged out")

    async def refuse(self, code: int, detail: Any) -> None:
        """An error message saying why, then the close code."""
        await self.send_json({"type": "error", "detail": detail})
        await self.close(code=code)

    async def sample_message(self, event: dict[str, Any]) -> None:
        message = event["message"]
        if self.iface in (None, message["interface"]) and self.host in (None, message["host"]):
            await self.deliver(message)

    async def alerts_message(self, event: dict[str, Any]) -> None:
        """The open alerts changed (alerts/live.py): every host's and interface's."""
        await self.send_json(event["message"])

    async def deliver(self, message: dict[str, Any]) -> None:
        """Send a sample of this connection's interface (the first one sent fixes it) once."""
        timestamp = datetime.fromisoformat(message["timestamp"])
        if self.last_timestamp is not None and timestamp <= self.last_timestamp:
            return
        self.host, self.iface = message["host"], message["interface"]
        self.last_timestamp = timestamp
        await self.send_json(message)
