"""REST contract of DESIGN.md: exact values from known samples, and 400s that say why."""

from datetime import timedelta

import pytest
from django.db import OperationalError, connections
from django.test import Client
from django.utils import timezone

from bpf.classes import CLASSES
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_samples():
    """eth0: 1000 B / 10 pkts in, 500 B / 5 out in the first second; then 2000/20 in, 1000/10
    out over the next two seconds, of which TCP to 443 is half the bytes."""
    run = start_run()
    run.record(
        counters(rx_total_bytes=1000, rx_total_packets=10, tx_total_bytes=500, tx_total_packets=5),
        at(1),
        1.0,
    )
    run.record(
        counters(
            rx_total_bytes=3000,
            rx_total_packets=30,
            tx_total_bytes=1500,
            tx_total_packets=15,
            rx_tcp_bytes=1500,
            rx_tcp_packets=12,
            rx_https_bytes=1500,
            rx_https_packets=12,
            rx_ipv4_bytes=3000,
            rx_ipv4_packets=30,
        ),
        at(3),
        2.0,
    )
    return run


def test_health(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.content == b"OK"


def test_health_reports_an_unreachable_database(client: Client, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OperationalError("unable to open database file")

    monkeypatch.setattr(type(connections["default"]), "create_cursor", broken)
    response = client.get("/health")
    assert response.status_code == 503
    assert b"unable to open database file" in response.content


def test_realtime_rates_of_latest_sample_and_run_totals(api, two_samples) -> None:
    body = api("/api/metrics/realtime")
    assert body["interface"] == "eth0"
    assert body["timestamp"] == "2026-11-27T12:00:03Z"
    assert body["sampler_running"] is False  # the sample is from 2026-11-27 12:00, long ago
    assert body["bandwidth_bps"] == (2000 + 1000) * 8 / 2
    assert body["packets_per_sec"] == (20 + 10) / 2
    assert body["tcp_bandwidth_bps"] == 1500 * 8 / 2
    assert body["tcp_packets_per_sec"] == 6
    assert body["https_bandwidth_bps"] == 1500 * 8 / 2
    assert body["http_bandwidth_bps"] == 0
    assert body["total_packets"] == 45
    assert body["total_bytes"] == 4500
    assert body["rx"]["bandwidth_bps"] == 8000
    assert body["rx"]["ipv4_packets_per_sec"] == 15  # 0 to 30 over 2 s
    assert body["tx"]["bandwidth_bps"] == 4000
    assert body["totals"]["rx"]["bytes"] == 3000
    assert body["totals"]["rx"]["https_packets"] == 12
    assert body["totals"]["tx"]["packets"] == 15
    assert set(body["rx"]) == set(body["tx"])
    assert len(body["rx"]) == 2 * len(CLASSES) and len(body["totals"]["rx"]) == 2 * len(CLASSES)


def test_realtime_with_egress_off_counts_ingress_only(api) -> None:
    run = start_run(egress=False)
    run.record(counters(rx_total_bytes=800, rx_total_packets=4), at(1), 1.0)
    body = api("/api/metrics/realtime")
    assert body["tx"] is None
    assert body["totals"]["tx"] is None
    assert body["bandwidth_bps"] == 6400
    assert body["total_bytes"] == 800


def test_realtime_sampler_running_while_samples_are_fresh(api) -> None:
    run = start_run(started_at=timezone.now())
    run.record(counters(rx_total_packets=1, rx_total_bytes=60), timezone.now(), 1.0)
    assert api("/api/metrics/realtime")["sampler_running"] is True
    run.stop(timezone.now())
    assert api("/api/metrics/realtime")["sampler_running"] is False


def test_realtime_picks_interface(api, two_samples) -> None:
    other = start_run(interface="veth1", started_at=at(-10))
    other.record(counters(rx_total_bytes=100, rx_total_packets=1), at(2), 1.0)
    assert api("/api/metrics/realtime")["interface"] == "eth0"  # the newest sample's
    assert api("/api/metrics/realtime?iface=veth1")["total_bytes"] == 100
    assert api("/api/metrics/realtime/?iface=eth0")["total_bytes"] == 4500


def test_realtime_unknown_interface_is_400_naming_the_parameter(api, two_samples) -> None:
    body = api("/api/metrics/realtime?iface=nope0", status=400)
    assert "unknown interface 'nope0'" in body["iface"][0]
    assert "eth0" in body["iface"][0]


@pytest.mark.parametrize(
    "query", ["iface=%00", "iface=" + "x" * 16, "iface=%ff%fe", "iface=a%20b"], ids=repr
)
def test_realtime_malformed_iface_is_400(api, two_samples, query: str) -> None:
    assert "iface" in api(f"/api/metrics/realtime?{query}", status=400)


def test_realtime_without_samples_is_404_with_a_hint(api) -> None:
    assert "start the sampler" in api("/api/metrics/realtime", status=404)["detail"]


def test_database_error_is_503_not_500(api, two_samples, monkeypatch) -> None:
    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("metrics.models.SamplerRunQuerySet.latest_for", locked)
    body = api("/api/metrics/realtime", status=503)
    assert "database is locked" in body["detail"]


def test_summary_of_current_run(api, two_samples) -> None:
    body = api("/api/stats/summary")
    assert body["interface"] == "eth0"
    assert body["window"] == "run"
    assert body["total_bytes"] == 4500
    assert body["total_packets"] == 45
    assert body["avg_bandwidth_bps"] == 4500 * 8 / 3
    assert body["peak_bandwidth_bps"] == 12000  # the second sample: 3000 B over 2 s
    assert body["tcp_percentage"] == pytest.approx(100 * 1500 / 4500)
    assert body["https_percentage"] == pytest.approx(100 * 1500 / 4500)
    assert body["http_percentage"] == 0
    assert body["uptime_seconds"] > 0


def test_summary_window_over_samples(api, two_samples) -> None:
    body = api("/api/stats/summary?window=all")
    assert body["window"] == "all"
    assert body["total_bytes"] == 4500
    assert body["uptime_seconds"] == 3
    assert body["peak_bandwidth_bps"] == 12000


def test_summary_window_excludes_older_samples(api) -> None:
    now = timezone.now()
    run = start_run(started_at=now - timedelta(hours=3))
    run.record(counters(rx_total_bytes=7000, rx_total_packets=7), now - timedelta(hours=2), 1.0)
    run.record(counters(rx_total_bytes=7100, rx_total_packets=8), now - timedelta(seconds=10), 1.0)
    body = api("/api/stats/summary?window=1h")
    assert (body["total_bytes"], body["total_packets"], body["uptime_seconds"]) == (100, 1, 1.0)
    assert api("/api/stats/summary?window=3h")["total_bytes"] == 7100


@pytest.mark.parametrize("window", ["5", "1y", "-5m", "0m", "99999d", "m", "%00", "1h;drop"])
def test_summary_bad_window_is_400_naming_the_parameter(api, two_samples, window: str) -> None:
    body = api(f"/api/stats/summary?window={window}", status=400)
    assert list(body) == ["window"]


def test_tcp_health_in_realtime_and_summary(api) -> None:
    """RTT updates in log2 buckets: 3 in [64, 128) us and 1 in [1024, 2048) us, then 2 more."""
    run = start_run()
    run.record(counters(tcp_retransmits=4, rtt_06=3, rtt_10=1), at(1), 1.0)
    run.record(counters(tcp_retransmits=10, rtt_06=3, rtt_10=3), at(3), 2.0)
    body = api("/api/metrics/realtime")
    assert body["tcp_retransmits"] == 3.0  # 6 in 2 s
    assert (body["rtt_p50_us"], body["rtt_p99_us"]) == (2048.0, 2048.0)  # only the 2 slow ones
    assert body["totals"]["tcp_retransmits"] == 10
    summary = api("/api/stats/summary")
    assert summary["tcp_retransmits"] == 10
    assert (summary["rtt_p50_us"], summary["rtt_p99_us"]) == (128.0, 2048.0)  # 3 fast, 3 slow
    assert api("/api/stats/summary?window=all")["rtt_p50_us"] == 128.0


def test_no_rtt_updates_is_null(api, two_samples) -> None:
    body = api("/api/metrics/realtime")
    assert body["rtt_p50_us"] is None and body["tcp_retransmits"] == 0
