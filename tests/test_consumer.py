"""The live WebSocket: latest sample on connect, then samples as another writer adds them; who
may connect (access/live.py)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, Permission, User
from django.db import OperationalError
from django.test import Client, override_settings
from django.utils import timezone

from access.rules import VIEWER_GROUP
from metrics.models import LiveFlows
from metrics.relay import relay
from netmetrics.asgi import application
from tests.samples import counters, start_run

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
# The client address daphne puts in the scope (the communicator gives none): this host's
# loopback, which needs no login by default (access/rules.py).
LOOPBACK = ("127.0.0.1", 40000)


def connect(
    path: str,
    headers: list[tuple[bytes, bytes]] = HEADERS,
    client: tuple[str, int] | None = LOOPBACK,
) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, path, headers=headers)
    ws.scope["client"] = client  # read when the communicator first runs the application
    return ws


def test_latest_on_connect_then_each_new_sample_with_its_totals() -> None:
    now = timezone.now()
    run = start_run(started_at=now)
    run.record(counters(rx_total_packets=2, rx_total_bytes=200), now, 1.0)

    @async_to_sync
    async def scenario() -> list[dict]:
        ws = connect("/ws/metrics/")
        connected, _ = await ws.connect()
        assert connected
        received = [await ws.receive_json_from(timeout=2)]
        # Two samples written "by the sampler" between two polls of the relay.
        await sync_to_async(run.record)(
            counters(rx_total_packets=5, rx_total_bytes=500), timezone.now(), 1.0
        )
        await sync_to_async(run.record)(
            counters(rx_total_packets=9, rx_total_bytes=900), timezone.now(), 1.0
        )
        received.append(await ws.receive_json_from(timeout=2))
        received.append(await ws.receive_json_from(timeout=2))
        await ws.disconnect()
        return received

    first, second, third = scenario()
    assert [m["type"] for m in (first, second, third)] == ["sample"] * 3
    assert [m["totals"]["rx"]["packets"] for m in (first, second, third)] == [2, 5, 9]
    assert [m["packets_per_sec"] for m in (first, second, third)] == [2, 3, 4]
    assert first["interface"] == "eth0" and first["sampler_running"] is True
    assert relay.subscribers == 0


def test_only_the_requested_interface() -> None:
    now = timezone.now()
    eth0, veth1 = start_run("eth0", started_at=now), start_run("veth1", started_at=now)
    veth1.record(counters(rx_total_packets=1, rx_total_bytes=64), now, 1.0)

    @async_to_sync
    async def scenario() -> list[dict]:
        ws = connect("/ws/metrics/?iface=veth1")
        assert (await ws.connect())[0]
        received = [await ws.receive_json_from(timeout=2)]
        await sync_to_async(eth0.record)(
            counters(rx_total_packets=7, rx_total_bytes=700), timezone.now(), 1.0
        )
        await sync_to_async(veth1.record)(
            counters(rx_total_packets=3, rx_total_bytes=192), timezone.now(), 1.0
        )
        received.append(await ws.receive_json_from(timeout=2))
        assert await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return received

    assert [(m["interface"], m["total_packets"]) for m in scenario()] == [
        ("veth1", 1),
        ("veth1", 3),
    ]


def test_without_iface_it_stays_on_the_interface_it_started_with() -> None:
    """The newest-sampled interface at connect, not whichever is sampled last afterwards."""
    now = timezone.now()
    eth0, veth1 = start_run("eth0", started_at=now), start_run("veth1", started_at=now)
    veth1.record(counters(rx_total_packets=1, rx_total_bytes=64), now, 1.0)
    eth0.record(counters(rx_total_packets=2, rx_total_bytes=128), timezone.now(), 1.0)

    @async_to_sync
    async def scenario() -> list[dict]:
        ws = connect("/ws/metrics/")
        assert (await ws.connect())[0]
        received = [await ws.receive_json_from(timeout=2)]
        await sync_to_async(veth1.record)(
            counters(rx_total_packets=5, rx_total_bytes=320), timezone.now(), 1.0
        )
        assert await ws.receive_nothing(timeout=0.6)  # veth1 is now the newest-sampled
        await sync_to_async(eth0.record)(
            counters(rx_total_packets=7, rx_total_bytes=448), timezone.now(), 1.0
        )
        received.append(await ws.receive_json_from(timeout=2))
        assert await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return received

    assert [(m["interface"], m["total_packets"]) for m in scenario()] == [("eth0", 2), ("eth0", 7)]


def test_unknown_interface_gets_an_error_and_a_close() -> None:
    @async_to_sync
    async def scenario() -> tuple[dict, dict]:
        ws = connect("/ws/metrics/?iface=nope0")
        assert (await ws.connect())[0]
        error = await ws.receive_json_from(timeout=2)
        closed = await ws.receive_output(timeout=2)
        return error, closed

    error, closed = scenario()
    assert error["type"] == "error" and "nope0" in error["detail"]["iface"][0]
    assert closed == {"type": "websocket.close", "code": 4400}


def test_waits_for_the_first_sample_when_there_is_none() -> None:
    @async_to_sync
    async def scenario() -> dict:
        ws = connect("/ws/metrics/")
        assert (await ws.connect())[0]
        assert await ws.receive_nothing(timeout=0.3)
        run = await sync_to_async(start_run)(started_at=timezone.now())
        await sync_to_async(run.record)(
            counters(tx_total_packets=1, tx_total_bytes=42), timezone.now(), 1.0
        )
        message = await ws.receive_json_from(timeout=2)
        await ws.disconnect()
        return message

    assert scenario()["totals"]["tx"]["bytes"] == 42


def test_foreign_origin_is_refused() -> None:
    @async_to_sync
    async def scenario() -> bool:
        ws = WebsocketCommunicator(
            application, "/ws/metrics/", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await ws.connect()
        return connected

    assert scenario() is False


def test_messages_carry_the_runs_live_flows() -> None:
    """On connect and with the newest sample of each poll: /api/flows/live's JSON for the run."""
    now = timezone.now()
    run = start_run(started_at=now)
    run.flow_table = 4096
    run.save(update_fields=["flow_table"])
    run.record(counters(rx_total_packets=2, rx_total_bytes=200), now, 1.0)
    row = {
        "protocol": 6,
        "local": "2001:db8::1",
        "local_port": 443,
        "remote": "2001:db8::2",
        "remote_port": 50000,
        **{f"{d}_{unit}": [1.0, 2.0, 3.0] for d in ("rx", "tx") for unit in ("bps", "pps")},
        **{f"{d}_{unit}": 7 for d in ("rx", "tx") for unit in ("packets", "bytes")},
    }
    LiveFlows.objects.create(run=run, timestamp=now, seconds=1.0, dropped=0, flows=[row])

    @async_to_sync
    async def scenario() -> list[dict]:
        ws = connect("/ws/metrics/")
        assert (await ws.connect())[0]
        received = [await ws.receive_json_from(timeout=2)]
        await sync_to_async(run.record)(
            counters(rx_total_packets=5, rx_total_bytes=500), timezone.now(), 1.0
        )
        received.append(await ws.receive_json_from(timeout=2))
        await ws.disconnect()
        return received

    for message in scenario():
        assert message["type"] == "sample" and message["flows"]["flow_table"] == 4096
        [flow] = message["flows"]["flows"]
        assert (flow["protocol"], flow["protocol_number"], flow["local_port"]) == ("tcp", 6, 443)
        assert flow["rx_bps"] == [1.0, 2.0, 3.0] and flow["remote_name"] is None


def logged_in(username: str, *, viewer: bool) -> Client:
    """A test client logged in as a new user, in the viewer group or not."""
    user = User.objects.create_user(username, password="not-used")
    if viewer:
        # The group as migration access/0002 makes it (a transactional test's flush removed it).
        group, _ = Group.objects.get_or_create(name=VIEWER_GROUP)
        group.permissions.add(Permission.objects.get(codename="view_traffic"))
        user.groups.add(group)
    client = Client()
    client.force_login(user)
    return client


def with_session(client: Client) -> list[tuple[bytes, bytes]]:
    return [*HEADERS, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def refusal(ws: WebsocketCommunicator) -> tuple[dict, dict]:
    """What follows the accept: the error message and the close, nothing else."""
    assert (await ws.connect())[0]
    return await ws.receive_json_from(timeout=2), await ws.receive_output(timeout=2)


def refused(code: int, detail: str) -> tuple[dict, dict]:
    return {"type": "error", "detail": detail}, {"type": "websocket.close", "code": code}


LOG_IN_FIRST = refused(4401, "log in first")


@pytest.mark.parametrize(
    ("mode", "client", "headers"),
    [
        ("required", LOOPBACK, HEADERS),
        ("loopback-open", ("192.0.2.7", 40000), HEADERS),
        ("loopback-open", None, HEADERS),
        # A proxy on this host forwarding someone else's request (no trusted proxy configured).
        ("loopback-open", LOOPBACK, [*HEADERS, (b"x-forwarded-for", b"192.0.2.7")]),
    ],
)
def test_a_client_that_must_log_in_and_has_not_is_closed_with_4401(
    mode: str, client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]
) -> None:
    with override_settings(NETMETRICS_AUTH=mode):
        answer = async_to_sync(refusal)(connect("/ws/metrics/", headers, client))
    assert answer == LOG_IN_FIRST


@override_settings(NETMETRICS_AUTH="required")
def test_a_user_without_the_viewer_permission_is_closed_with_4403() -> None:
    headers = with_session(logged_in("guest", viewer=False))
    answer = async_to_sync(refusal)(connect("/ws/metrics/", headers))
    assert answer == refused(
        4403, "not allowed to see traffic: ask an administrator for the viewer group"
    )


@override_settings(NETMETRICS_AUTH="required")
def test_logging_out_closes_that_sessions_connections_with_4401_and_no_other() -> None:
    now = timezone.now()
    run = start_run(started_at=now)
    run.record(counters(rx_total_packets=2, rx_total_bytes=200), now, 1.0)
    browser, phone = logged_in("alice", viewer=True), Client()
    phone.force_login(User.objects.get(username="alice"))  # a second session of the same user

    @async_to_sync
    async def scenario() -> tuple[list[int], tuple[dict, dict], tuple[dict, dict]]:
        cookie = with_session(browser)
        here, there = connect("/ws/metrics/", cookie), connect("/ws/metrics/", with_session(phone))
        assert (await here.connect())[0] and (await there.connect())[0]
        first = [(await ws.receive_json_from(timeout=2))["total_packets"] for ws in (here, there)]
        response = await sync_to_async(browser.post)("/logout/")
        assert response.status_code == 302
        closed = await here.receive_json_from(timeout=2), await here.receive_output(timeout=2)
        await sync_to_async(run.record)(
            counters(rx_total_packets=5, rx_total_bytes=500), timezone.now(), 1.0
        )
        still = await there.receive_json_from(timeout=2)
        await there.disconnect()
        # And the ended session's cookie no longer connects.
        again = await refusal(connect("/ws/metrics/", cookie))
        return [*first, still["total_packets"]], closed, again

    totals, closed, again = scenario()
    assert totals == [2, 2, 5]
    assert closed == refused(4401, "logged out")
    assert again == LOG_IN_FIRST
    assert relay.subscribers == 0


def test_a_database_that_cannot_answer_is_an_error_and_4503(monkeypatch) -> None:
    def locked(*args: object) -> None:
        raise OperationalError("database is locked")

    monkeypatch.setattr("metrics.consumers.latest_message", locked)
    error, closed = async_to_sync(refusal)(connect("/ws/metrics/"))
    assert error == {
        "type": "error",
        "detail": "the database cannot answer right now (database is locked); try again shortly",
    }
    assert closed == {"type": "websocket.close", "code": 4503}
    assert relay.subscribers == 0
