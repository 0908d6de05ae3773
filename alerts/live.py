"""The dashboard's alert banner over the live WebSocket: a message of type "alerts" carrying
every open alert (as /api/alerts' `open`), sent when a client connects while some are open and
to every client whenever the set of open alerts changes. Clients that know only "sample" and
"error" messages ignore it.

The relay (metrics/relay.py) looks for a change on each of its reads: on SQLite five a second;
on PostgreSQL at each NOTIFY, which each tick sends and so does each alert opened or closed
(Alert.announce), at the commit that makes it visible.
"""

from __future__ import annotations

from typing import Any

from alerts.api.serializers import AlertSerializer
from alerts.models import Alert

TYPE = "alerts"


def open_alert_ids() -> frozenset[int]:
    return frozenset(Alert.still_open().values_list("pk", flat=True))


def alerts_message() -> dict[str, Any]:
    return {"type": TYPE, "alerts": AlertSerializer(Alert.still_open(), many=True).data}
