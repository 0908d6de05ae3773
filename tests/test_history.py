"""Windows over the rollup tiers, the history API, and the interfaces list: exact values."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from metrics.models import HOST_TOTAL, Sample
from metrics.summary import window_summary
from metrics.tiers import tier_plan
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db


def record(run, starts: list[int], elapsed: float = 30.0) -> None:
    """Samples of `elapsed` seconds starting at T0 + each of starts, with traffic that grows
    with the start time so every bucket and edge carries different numbers."""
    totals = {"rx_total_bytes": 0, "rx_total_packets": 0, "tx_total_bytes": 0, "rx_https_bytes": 0}
    for start in starts:
        totals["rx_total_bytes"] += 1000 + start
        totals["rx_total_packets"] += 1 + start % 7
        totals["tx_total_bytes"] += 10 + start % 13
        totals["rx_https_bytes"] += start % 1000
        run.record(counters(**totals), at(start + elapsed), elapsed)


@pytest.fixture
def three_hours():
    run = start_run()
    record(run, list(range(0, 3 * 3600, 45)), elapsed=45.0)
    return run


def test_plan_uses_hours_minutes_and_raw_edges() -> None:
    plan = [(t.model.__name__, lo, hi) for t, lo, hi in tier_plan(at(95), at(3 * 3600 - 125))]
    assert plan == [
        ("HourRollup", at(3600), at(7200)),
        ("MinuteRollup", at(120), at(3600)),
        ("MinuteRollup", at(7200), at(3 * 3600 - 180)),
        ("Sample", at(95), at(120)),
        ("Sample", at(3 * 3600 - 180), at(3 * 3600 - 125)),
    ]


@pytest.mark.parametrize(
    "since, until", [(95, 3 * 3600 - 125), (0, 3 * 3600), (610, 650), (3599, 3601), (59, 7261)]
)
def test_window_from_tiers_equals_the_raw_samples(three_hours, since: int, until: int) -> None:
    raw = Sample.objects.filter(start__gte=at(since), start__lt=at(until))
    expected = raw.aggregate(b=Sum("rx_total_bytes"), t=Sum("tx_total_bytes"), s=Sum("elapsed"))
    summary = window_summary(three_hours.series, "w", at(since), at(until))
    assert summary.total_bytes == expected["b"] + expected["t"]
    assert summary.measured_seconds == expected["s"]
    assert summary.peak_bandwidth_bps == max(
        (s.rx_total_bytes + s.tx_total_bytes) * 8 / s.elapsed for s in raw
    )


def test_summary_since_until_in_the_api(client: Client, three_hours) -> None:
    response = client.get(
        "/api/stats/summary", {"since": "2026-11-27T12:01:35Z", "until": "2026-11-27T14:57:55Z"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    raw = Sample.objects.filter(start__gte=at(95), start__lt=at(3 * 3600 - 125))
    assert body["total_bytes"] == sum(s.rx_total_bytes + s.tx_total_bytes for s in raw)
    assert body["https_percentage"] == pytest.approx(
        100 * sum(s.rx_https_bytes for s in raw) / body["total_bytes"]
    )


@pytest.mark.parametrize(
    "query, field",
    [
        ({"window": "1h", "since": "2026-11-27T12:00:00Z"}, "window"),
        ({"until": "2026-11-27T12:00:00Z"}, "since"),
        ({"since": "2026-11-27T13:00:00Z", "until": "2026-11-27T12:00:00Z"}, "until"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_summary_bad_range_is_400(client: Client, query: dict, field: str) -> None:
    record(start_run(), [0])
    response = client.get("/api/stats/summary", query)
    assert response.status_code == 400 and field in response.json()


def history(client: Client, status: int = 200, **query):
    response = client.get("/api/metrics/history", query)
    assert response.status_code == status, response.content
    return response


def test_history_per_minute_with_a_gap(client: Client) -> None:
    run = start_run()
    record(run, [0, 30, 60, 90, 300, 330])  # minutes 0, 1, then nothing until minute 5
    body = history(
        client,
        since="2026-11-27T12:00:00Z",
        until="2026-11-27T12:06:00Z",
        step="1m",
        fields="bandwidth_bps,https_bandwidth_bps,peak_bandwidth_bps",
    ).json()
    assert body["step"] == "1m" and body["interface"] == "eth0"
    assert body["timestamps"] == [int(at(60 * i).timestamp()) for i in range(6)]
    bandwidth = body["series"]["bandwidth_bps"]
    assert bandwidth[0] == ((1000 + 0 + 10) + (1030 + 10 + 30 % 13)) * 8 / 60
    assert bandwidth[2:5] == [None, None, None]
    assert bandwidth[5] == ((1300 + 10 + 300 % 13) + (1330 + 10 + 330 % 13)) * 8 / 60
    assert body["series"]["https_bandwidth_bps"][1] == (60 + 90) * 8 / 60
    assert body["series"]["peak_bandwidth_bps"][1] == (1090 + 10 + 90 % 13) * 8 / 30
    assert set(body["series"]) == {"bandwidth_bps", "https_bandwidth_bps", "peak_bandwidth_bps"}


def test_history_per_second_spreads_a_late_tick(client: Client) -> None:
    run = start_run()
    run.record(counters(rx_total_bytes=100, rx_total_packets=1), at(1), 1.0)
    run.record(counters(rx_total_bytes=500, rx_total_packets=3), at(3), 2.0)  # a late tick
    body = history(
        client,
        since="2026-11-27T12:00:00Z",
        until="2026-11-27T12:00:05Z",
        step="1s",
        direction="rx",
        fields="bandwidth_bps,packets_per_sec",
    ).json()
    assert body["series"]["bandwidth_bps"] == [800.0, 1600.0, 1600.0, None, None]
    assert body["series"]["packets_per_sec"] == [1.0, 1.0, 1.0, None, None]
    tx = history(
        client,
        since="2026-11-27T12:00:00Z",
        until="2026-11-27T12:00:02Z",
        step="1s",
        direction="tx",
        fields="bandwidth_bps",
    ).json()
    assert tx["series"]["bandwidth_bps"] == [0.0, 0.0]


def test_history_tcp_health(client: Client) -> None:
    run = start_run()
    run.record(counters(tcp_retransmits=2, rtt_04=9, rtt_12=1), at(1), 1.0)
    run.record(counters(tcp_retransmits=2, rtt_04=9, rtt_12=1), at(2), 1.0)  # no change: no RTT
    body = history(
        client,
        since="2026-11-27T12:00:00Z",
        until="2026-11-27T12:00:02Z",
        step="1s",
        fields="tcp_retransmits,rtt_p50_us,rtt_p99_us",
    ).json()
    assert body["series"] == {
        "tcp_retransmits": [2.0, 0.0],
        "rtt_p50_us": [32.0, None],
        "rtt_p99_us": [8192.0, None],
    }
    minute = history(
        client,
        since="2026-11-27T12:00:00Z",
        until="2026-11-27T12:01:00Z",
        step="1m",
        fields="tcp_retransmits,rtt_p50_us",
    ).json()
    assert minute["series"] == {"tcp_retransmits": [1.0], "rtt_p50_us": [32.0]}


def test_history_csv(client: Client) -> None:
    run = start_run()
    record(run, [0, 120])
    response = history(
        client,
        since="2026-11-27T12:00:00Z",
        until="2026-11-27T12:03:00Z",
        step="1m",
        fields="packets_per_sec",
        format="csv",
    )
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert response.content.decode().splitlines() == [
        "timestamp,packets_per_sec",
        "2026-11-27T12:00:00Z,0.03333333333333333",
        "2026-11-27T12:01:00Z,",
        f"2026-11-27T12:02:00Z,{(1 + 120 % 7) / 30}",  # rates over the measured 30 s
    ]


def test_history_auto_step_and_default_range(client: Client) -> None:
    now = timezone.now()
    run = start_run(started_at=now - timedelta(days=8))
    run.record(counters(rx_total_bytes=60, rx_total_packets=1), now - timedelta(seconds=5), 1.0)
    assert history(client).json()["step"] == "1m"  # the last hour: 60 points
    for span, step in [
        (timedelta(minutes=10), "1s"),
        (timedelta(hours=24), "1m"),
        (timedelta(days=7), "1h"),
    ]:
        since = (now - span).isoformat()
        assert history(client, since=since).json()["step"] == step
    old = (now - timedelta(days=3)).isoformat()  # raw seconds are gone by then: minutes
    assert (
        history(
            client, since=old, until=(now - timedelta(days=3) + timedelta(minutes=5)).isoformat()
        ).json()["step"]
        == "1m"
    )


@pytest.mark.parametrize(
    "query, field",
    [
        ({"fields": "bandwidth_bps,nope"}, "fields"),
        ({"step": "5s"}, "step"),
        ({"direction": "up"}, "direction"),
        ({"step": "1s", "since": "2026-11-01T00:00:00Z", "until": "2026-11-27T00:00:00Z"}, "step"),
        ({"since": "2026-11-27T13:00:00Z", "until": "2026-11-27T12:00:00Z"}, "until"),
        ({"until": "not a date"}, "until"),
        ({"iface": "nope0"}, "iface"),
    ],
)
def test_history_bad_parameters_are_400(client: Client, query: dict, field: str) -> None:
    record(start_run(), [0])
    body = history(client, status=400, **query).json()
    assert field in body, body


def test_interfaces_lists_each_with_its_state(client: Client) -> None:
    now = timezone.now()
    live = start_run("eth0", started_at=now - timedelta(minutes=5))
    live.record(counters(rx_total_bytes=1, rx_total_packets=1), now, 1.0)
    old = start_run("veth1")
    record(old, [0])
    old.stop(at(40))
    killed = start_run("wlan0", egress=False)
    record(killed, [0])
    body = client.get("/api/interfaces").json()
    assert [(i["interface"], i["status"]) for i in body] == [
        ("eth0", "running"),
        ("veth1", "stopped"),
        ("wlan0", "stale"),
    ]
    veth = body[1]
    assert veth["first_sample"] == "2026-11-27T12:00:00Z"
    assert veth["last_sample"] == "2026-11-27T12:00:30Z"
    assert veth["run"]["mode"] == "native" and body[2]["run"]["egress"] is False
    assert datetime.fromisoformat(body[0]["last_sample"]).astimezone(UTC) == now
    assert [(i["total"], i["members"]) for i in body] == [(False, [])] * 3
    # The running one's current rates: 1 byte and 1 packet in 1 s, both ways; none when stopped.
    assert (body[0]["bandwidth_bps"], body[0]["packets_per_sec"]) == (8.0, 1.0)
    assert (veth["bandwidth_bps"], veth["packets_per_sec"]) == (None, None)


def test_interfaces_lists_the_host_total_first_with_its_members(client: Client) -> None:
    now = timezone.now()
    for name in ("br0", "eth1"):
        start_run(name).record(counters(rx_total_bytes=250, rx_total_packets=2), now, 0.5)
    total = start_run(HOST_TOTAL)
    total.record(counters(rx_total_bytes=500, rx_total_packets=4), now, 0.5, ["br0", "eth1"])
    body = client.get("/api/interfaces").json()
    assert [(i["interface"], i["total"], i["members"]) for i in body] == [
        (HOST_TOTAL, True, ["br0", "eth1"]),
        ("br0", False, []),
        ("eth1", False, []),
    ]
    assert [(i["bandwidth_bps"], i["packets_per_sec"]) for i in body] == [
        (8000.0, 8.0),
        (4000.0, 4.0),
        (4000.0, 4.0),
    ]
