"""Who may have the live feed, on a real daphne server that requires a login
(NETMETRICS_AUTH=required): real WebSockets carrying the session cookie of a real login through
the login form (access/live.py).

Logging out closes the session's WebSockets through the channel layer: under REDIS_URL the
logout goes through a second server, whose message must cross to the first one's clients; with
the in-memory layer (one process) through the same server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.processes import HttpSession, WebServer, create_user, live_socket, migrated_env
from tests.writer import Writer

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

IFACE = "eth3"
DELTA = {"rx_total_packets": 4, "rx_total_bytes": 400}
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A server requiring a login (two sharing Redis under REDIS_URL), a viewer and a user who
    is not one, and a writer with one sample written."""
    tmp = tmp_path_factory.mktemp("live-access")
    env = {**migrated_env(tmp / "db.sqlite3"), "NETMETRICS_AUTH": "required"}
    create_user(env, "viewer", PASSWORD, viewer=True)
    create_user(env, "guest", PASSWORD, viewer=False)
    writer = Writer(env, tmp / "writer.log")
    servers = [WebServer(env, tmp / f"web-{n}.log") for n in range(2 if "REDIS_URL" in env else 1)]
    try:
        for server in servers:
            server.wait_healthy()
        writer("start", key="a", iface=IFACE)
        writer("add", key="a", delta=DELTA)
        yield {"servers": servers, "writer": writer}
    finally:
        for server in servers:
            server.stop()
        writer.close()


def refused(ws: ClientConnection) -> tuple[int, str]:
    """The close code the server sends next, and the detail of the error message just before
    it (nothing else)."""
    error = json.loads(ws.recv(timeout=5))
    assert error["type"] == "error"
    with pytest.raises(ConnectionClosedError) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, error["detail"]


def packets(ws: ClientConnection) -> int:
    message = json.loads(ws.recv(timeout=5))
    assert message["type"] == "sample" and message["interface"] == IFACE
    return message["totals"]["rx"]["packets"]


def test_a_page_of_another_origin_is_refused_at_the_handshake(world) -> None:
    server = world["servers"][0]
    cookie = HttpSession(server.url).login("viewer", PASSWORD).cookie_header  # even a viewer's
    with pytest.raises(InvalidStatus) as refused:
        live_socket(server.port, cookie=cookie, origin="http://evil.example")
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("cookie", ["", "sessionid=not-a-session"])
def test_without_a_login_the_feed_closes_with_4401(world, cookie: str) -> None:
    with live_socket(world["servers"][0].port, cookie=cookie) as ws:
        assert refused(ws) == (4401, "log in first")


def test_a_user_who_is_not_a_viewer_gets_4403(world) -> None:
    server = world["servers"][0]
    guest = HttpSession(server.url).login("guest", PASSWORD)
    with live_socket(server.port, cookie=guest.cookie_header) as ws:
        assert refused(ws) == (
            4403,
            "not allowed to see traffic: ask an administrator for the viewer group",
        )


def test_logging_out_closes_that_sessions_websockets_with_4401(world) -> None:
    first, last = world["servers"][0], world["servers"][-1]
    laptop, phone = (HttpSession(first.url).login("viewer", PASSWORD) for _ in range(2))
    with (
        live_socket(first.port, cookie=laptop.cookie_header) as on_laptop,
        live_socket(first.port, cookie=phone.cookie_header) as on_phone,
    ):
        assert packets(on_laptop) == packets(on_phone) == DELTA["rx_total_packets"]
        cookie = laptop.cookie_header
        laptop.url = last.url  # under Redis, another web process (cookies ignore the port)
        assert laptop.logout() == 302
        assert refused(on_laptop) == (4401, "logged out")
        # The other session of the same user keeps its feed.
        world["writer"]("add", key="a", delta=DELTA)
        assert packets(on_phone) == 2 * DELTA["rx_total_packets"]
    # The ended session's cookie no longer opens one.
    with live_socket(first.port, cookie=cookie) as ws:
        assert refused(ws) == (4401, "log in first")
