"""The WebSocket's side of access/rules.py: who may open the live feed, and closing a session's
connections when it logs out.

A refused connection is accepted, sent `{"type": "error", "detail": "..."}` and closed with an
application close code, so that the client learns why (a refusal at the handshake is only an
HTTP 403, the same as a foreign Origin; daphne sends no close reason):

- 4401: no login (or it ended: logged out). Log in, then connect again.
- 4403: logged in, but without the viewer permission (VIEW_PERMISSION).

A connection admitted by its login joins a channel-layer group named from its session; logging
out sends that group a message that closes each of them with 4401, in every web process when
the layer is shared (REDIS_URL). One admitted without a login (loopback-open) joins none: it
never depended on the session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpRequest

from access.rules import may_view, open_without_login

NOT_LOGGED_IN = 4401  # as HTTP's 401
NOT_ALLOWED = 4403  # as HTTP's 403
SESSION_ENDED = "session.ended"  # the group message; the consumer's session_ended() handles it


@dataclass(frozen=True)
class Admission:
    """What a connection may do: be told `detail` and closed with `code` if it is refused; else
    stay, in `group` (None: it needs no login) until its session logs out."""

    code: int | None = None
    detail: str = ""
    group: str | None = None


def session_group(session_key: str) -> str:
    """A session's group: named from a hash of its key, which is a credential and would
    otherwise be readable wherever group names are (Redis' keys)."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def admission(scope: Mapping[str, Any]) -> Admission:
    """Whether a WebSocket scope (after Channels' AuthMiddlewareStack) may have the live feed.
    Reads the database (the user's permissions): call it through database_sync_to_async."""
    client = scope.get("client")
    names = [name for name, _ in scope.get("headers", ())]
    if open_without_login(client[0] if client else None, names):
        return Admission()
    user = scope.get("user")
    if may_view(user):
        return Admission(group=session_group(scope["session"].session_key))
    if user is not None and user.is_authenticated:
        return Admission(
            NOT_ALLOWED, "not allowed to see traffic: ask an administrator for the viewer group"
        )
    return Admission(NOT_LOGGED_IN, "log in first")


def close_live_connections(sender: type, request: HttpRequest, **kwargs: Any) -> None:
    """user_logged_out's receiver: the session's WebSockets close with 4401. Runs before
    logout() flushes the session, so its key is still the one the connections joined with."""
    key = request.session.session_key
    layer = get_channel_layer()
    if key and layer is not None:
        async_to_sync(layer.group_send)(session_group(key), {"type": SESSION_ENDED})
