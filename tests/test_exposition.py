"""GET /metrics: exact series from runs and samples written through the models' own code."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import OperationalError, connections
from django.test import Client
from django.urls import path
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bpf.classes import CLASSES
from metrics.api import exposition
from metrics.models import HOST_TOTAL
from tests.samples import T0, at, counters, start_run

# The lead wires the same view into netmetrics/urls.py; this module is its own URLconf so these
# tests do not depend on that.
urlpatterns = [path("metrics", exposition.metrics_view, name="metrics")]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client) -> tuple[Series, set[str]]:
    """Every sample of GET /metrics by (name, labels), and the families that have HELP/TYPE."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    series: Series = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(response.content.decode()):
        families.add(family.name)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, key
            series[key] = sample.value
    return series, families


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """A series' key; of this host (settings.NETMETRICS_HOST_NAME) unless labels say another."""
    return name, frozenset({"host": settings.NETMETRICS_HOST_NAME, **labels}.items())


def counter_series(iface: str, directions: tuple[str, ...], **values: int) -> Series:
    """All packets/bytes series of one interface: zero but for the given counter columns."""
    out: Series = {}
    for unit in ("packets", "bytes"):
        for direction in directions:
            for cls in CLASSES:
                value = values.get(f"{direction}_{cls}_{unit}", 0)
                labels = {"interface": iface, "direction": direction, "class": cls}
                out[key(f"netmetrics_{unit}_total", **labels)] = value
    return out


def test_latest_run_per_interface_with_exact_values(client: Client) -> None:
    # eth0: an old run, stopped, then the current one; only the current one's counters count.
    old = start_run("eth0", started_at=T0 - timedelta(hours=1))
    old.record(counters(rx_total_bytes=999_999, rx_total_packets=999), T0 - timedelta(minutes=1), 1)
    old.stop(T0 - timedelta(seconds=30))
    eth0 = start_run("eth0", started_at=T0)
    eth0.record(counters(rx_total_bytes=1000, rx_total_packets=10), at(1), 1.0)
    eth0_counts = {
        "rx_total_bytes": 3000,
        "rx_total_packets": 30,
        "rx_ipv4_bytes": 3000,
        "rx_ipv4_packets": 30,
        "rx_tcp_bytes": 1500,
        "rx_tcp_packets": 12,
        "rx_https_bytes": 1500,
        "rx_https_packets": 12,
        "tx_total_bytes": 1500,
        "tx_total_packets": 15,
        "tx_udp_bytes": 700,
        "tx_udp_packets": 7,
        "tx_dns_bytes": 700,
        "tx_dns_packets": 7,
    }
    eth0.record(counters(**eth0_counts, tcp_retransmits=5), at(3), 2.0)
    # wlan0: skb mode, egress not measured: no tx series at all.
    wlan0 = start_run("wlan0", egress=False, started_at=T0 + timedelta(seconds=10))
    wlan0.mode = "skb"
    wlan0.save(update_fields=["mode"])
    wlan0_counts = {"rx_total_bytes": 640, "rx_total_packets": 4, "rx_ipv6_bytes": 640}
    wlan0.record(counters(**wlan0_counts, rx_ipv6_packets=4), at(12), 1.0)
    # A run that has written no sample yet is not exposed.
    start_run("eth1", started_at=at(20))

    series, _ = scrape(client)

    expected: Series = {
        **counter_series("eth0", ("rx", "tx"), **eth0_counts),
        **counter_series("wlan0", ("rx",), **wlan0_counts, rx_ipv6_packets=4),
        key("netmetrics_tcp_retransmits_total", interface="eth0"): 5.0,
        key("netmetrics_tcp_retransmits_total", interface="wlan0"): 0.0,
        key("netmetrics_sampler_up", interface="eth0"): 0.0,  # samples from 2026-11-27
        key("netmetrics_sampler_up", interface="wlan0"): 0.0,
        key("netmetrics_last_sample_timestamp_seconds", interface="eth0"): at(3).timestamp(),
        key("netmetrics_last_sample_timestamp_seconds", interface="wlan0"): at(12).timestamp(),
        key(
            "netmetrics_sampler_start_time_seconds",
            interface="eth0",
            mode="native",
            egress="true",
            hostname=settings.NETMETRICS_HOST_NAME,
            host_id=str(settings.NETMETRICS_HOST_ID),
        ): T0.timestamp(),
        key(
            "netmetrics_sampler_start_time_seconds",
            interface="wlan0",
            mode="skb",
            egress="false",
            hostname=settings.NETMETRICS_HOST_NAME,
            host_id=str(settings.NETMETRICS_HOST_ID),
        ): at(10).timestamp(),
    }
    assert series == expected


def test_sampler_up_for_a_fresh_sample(client: Client) -> None:
    run = start_run("eth0", started_at=timezone.now() - timedelta(seconds=5))
    run.record(counters(rx_total_bytes=100, rx_total_packets=1), timezone.now(), 1.0)
    stale = start_run("eth1", started_at=timezone.now() - timedelta(minutes=5))
    stale.record(
        counters(rx_total_bytes=100, rx_total_packets=1),
        timezone.now() - timedelta(seconds=10),
        1.0,
    )

    series, _ = scrape(client)

    assert series[key("netmetrics_sampler_up", interface="eth0")] == 1.0
    assert series[key("netmetrics_sampler_up", interface="eth1")] == 0.0


def test_stopped_run_is_down_but_keeps_its_counters(client: Client) -> None:
    run = start_run("eth0", started_at=timezone.now() - timedelta(seconds=5))
    run.record(counters(rx_total_bytes=100, rx_total_packets=1), timezone.now(), 1.0)
    run.stop(timezone.now())

    series, _ = scrape(client)

    assert series[key("netmetrics_sampler_up", interface="eth0")] == 0.0
    labels = {"interface": "eth0", "direction": "rx", "class": "total"}
    assert series[key("netmetrics_bytes_total", **labels)] == 100


def test_the_host_total_marks_the_interfaces_it_sums(client: Client) -> None:
    for name in ("br0", "port0", "eth1"):
        start_run(name).record(counters(rx_total_bytes=100, rx_total_packets=1), at(1), 1.0)
    start_run(HOST_TOTAL).record(
        counters(rx_total_bytes=200, rx_total_packets=2), at(1), 1.0, ["br0", "eth1"]
    )

    series, _ = scrape(client)

    members = {
        dict(labels)["interface"]: value
        for (name, labels), value in series.items()
        if name == "netmetrics_host_total_member"
    }
    assert members == {"br0": 1.0, "eth1": 1.0, "port0": 0.0}
    labels = {"interface": HOST_TOTAL, "direction": "rx", "class": "total"}
    assert series[key("netmetrics_bytes_total", **labels)] == 200


def test_no_member_series_without_a_host_total(client: Client) -> None:
    start_run("eth0").record(counters(rx_total_bytes=1), at(1), 1.0)
    _, families = scrape(client)
    assert "netmetrics_host_total_member" not in families and "netmetrics_sampler_up" in families


def test_content_type_and_types(client: Client) -> None:
    start_run().record(counters(rx_total_bytes=1), at(1), 1.0)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    text = response.content.decode()
    assert "# TYPE netmetrics_packets_total counter\n" in text
    assert "# TYPE netmetrics_bytes_total counter\n" in text
    assert "# TYPE netmetrics_sampler_up gauge\n" in text
    assert "# TYPE netmetrics_last_sample_timestamp_seconds gauge\n" in text
    assert "# TYPE netmetrics_sampler_start_time_seconds gauge\n" in text
    # Only our own metrics: not the default registry's process_* and python_* ones.
    assert "process_" not in text and "python_" not in text
    assert "_created" not in text


def test_empty_database_is_a_valid_exposition_without_series(client: Client) -> None:
    series, families = scrape(client)
    assert series == {}
    assert families == {
        "netmetrics_packets",
        "netmetrics_bytes",
        "netmetrics_tcp_retransmits",
        "netmetrics_sampler_up",
        "netmetrics_last_sample_timestamp_seconds",
        "netmetrics_sampler_start_time_seconds",
        "netmetrics_alert_active",
    }


def test_one_query_whatever_the_number_of_interfaces(
    client: Client, django_assert_num_queries
) -> None:
    for n, iface in enumerate(("eth0", "eth1", "wlan0")):
        for started in (0, 100):
            run = start_run(iface, started_at=at(started + n))
            run.record(counters(rx_total_bytes=started + n), at(started + n + 1), 1.0)
    with django_assert_num_queries(1 + 1):  # the runs, and the open alerts
        series, _ = scrape(client)
    for n, iface in enumerate(("eth0", "eth1", "wlan0")):
        labels = {"interface": iface, "direction": "rx", "class": "total"}
        assert series[key("netmetrics_bytes_total", **labels)] == 100 + n


def test_post_is_not_allowed(client: Client) -> None:
    response = client.post("/metrics")
    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_unreachable_database_is_503_not_500(client: Client, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OperationalError("unable to open database file")

    monkeypatch.setattr(type(connections["default"]), "create_cursor", broken)
    response = client.get("/metrics")
    assert response.status_code == 503
    assert response.content == b"database unavailable: unable to open database file"
    assert response["Content-Type"].startswith("text/plain")
