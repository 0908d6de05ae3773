"""Hosts: each host's rows are its own, ?host= picks one, /api/hosts lists them, /metrics
labels them, and rows written before hosts existed become this host's."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from metrics.models import Host, MinuteRollup, Sample, SamplerRun
from netmetrics import envconfig
from tests.samples import T0, at, counters, start_run

pytestmark = pytest.mark.django_db

ALPHA = uuid.UUID("00000000-0000-4000-8000-00000000a1fa")
BETA = uuid.UUID("00000000-0000-4000-8000-0000000000be")


def host(pk: uuid.UUID, name: str) -> Host:
    return Host.objects.create(id=pk, name=name)


def per_second(run: SamplerRun, seconds: int, rx_bytes: int, tx_bytes: int, start=T0) -> None:
    """`seconds` one-second samples from start, each of rx_bytes in and tx_bytes out."""
    for i in range(1, seconds + 1):
        total = counters(
            rx_total_bytes=rx_bytes * i,
            rx_total_packets=i,
            tx_total_bytes=tx_bytes * i,
            tx_total_packets=i,
        )
        run.record(total, start + timedelta(seconds=i), 1.0)


@pytest.fixture
def fleet() -> dict[str, SamplerRun]:
    """Two hosts with an eth0 each, sampled over the same two minutes; beta also has wlan0."""
    alpha, beta = host(ALPHA, "alpha"), host(BETA, "beta")
    runs = {
        "alpha": start_run("eth0", host=alpha),
        "beta": start_run("eth0", host=beta),
        "beta-wlan0": start_run("wlan0", host=beta),
    }
    per_second(runs["alpha"], 120, rx_bytes=1000, tx_bytes=100)
    per_second(runs["beta"], 120, rx_bytes=7, tx_bytes=3)
    per_second(runs["beta-wlan0"], 5, rx_bytes=1, tx_bytes=1)
    return runs


def test_the_same_interface_on_two_hosts_keeps_its_own_rows(fleet) -> None:
    for name, rx in (("alpha", 1000), ("beta", 7)):
        run = fleet[name]
        minutes = MinuteRollup.objects.filter(**run.series.filter()).order_by("start")
        # Samples take their bucket by start: 12:00:00-12:00:59 and 12:01:00-12:01:59.
        assert [(m.start, m.rx_total_bytes, m.samples) for m in minutes] == [
            (at(0), 60 * rx, 60),
            (at(60), 60 * rx, 60),
        ]
        assert Sample.objects.filter(**run.series.filter()).count() == 120


def test_host_picks_the_series_of_every_endpoint(api, fleet) -> None:
    window = "since=2026-11-27T12:00:00Z&until=2026-11-27T12:02:00Z"
    for name, rx, tx in (("alpha", 1000, 100), ("beta", 7, 3)):
        query = f"host={name}&iface=eth0"
        realtime = api(f"/api/metrics/realtime?{query}")
        assert (realtime["host"], realtime["host_name"]) == (str(fleet[name].host_id), name)
        assert realtime["totals"]["rx"]["bytes"] == 120 * rx
        assert api(f"/api/stats/summary?{query}&{window}")["total_bytes"] == 120 * (rx + tx)
        history = api(f"/api/metrics/history?{query}&{window}&step=1m&fields=bandwidth_bps")
        assert history["series"]["bandwidth_bps"] == [8 * (rx + tx)] * 2
    # By id as well as by name; without an interface, the host's newest-sampled one.
    assert api(f"/api/metrics/realtime?host={BETA}")["interface"] == "eth0"
    assert api("/api/metrics/realtime?host=beta&iface=wlan0")["totals"]["rx"]["bytes"] == 5


def test_bad_host_parameters_are_400_that_say_why(api, fleet) -> None:
    unknown = api("/api/metrics/realtime?host=gamma", status=400)
    assert unknown == {
        "host": ["unknown host 'gamma': no host has this id or name (GET /api/hosts lists them)"]
    }
    elsewhere = api("/api/metrics/realtime?host=alpha&iface=wlan0", status=400)
    assert elsewhere == {
        "iface": [
            "unknown interface 'wlan0' on alpha: no samples for it "
            "(interfaces with samples on alpha: eth0)"
        ]
    }
    assert api("/api/interfaces?host=", status=400) == {
        "host": ["may not be blank: give a value or leave it out"]
    }
    host(uuid.uuid4(), "beta")
    shared = api("/api/stats/summary?host=beta", status=400)
    assert shared == {
        "host": ["several hosts are named 'beta': give its id (GET /api/hosts lists them)"]
    }
    assert api(f"/api/stats/summary?host={BETA}&iface=wlan0")["interface"] == "wlan0"


def test_hosts_lists_every_host_with_its_state_and_current_traffic(api, fleet) -> None:
    # gamma is running: its newest sample is from now.
    gamma = start_run("eth0", host=host(uuid.uuid4(), "gamma"), started_at=timezone.now())
    per_second(gamma, 2, rx_bytes=500, tx_bytes=250, start=timezone.now() - timedelta(seconds=2))
    idle = host(uuid.uuid4(), "delta")
    hosts = api("/api/hosts")
    assert [(h["name"], h["status"], h["interfaces"]) for h in hosts] == [
        ("gamma", "running", ["eth0"]),
        ("alpha", "stale", ["eth0"]),
        ("beta", "stale", ["eth0", "wlan0"]),
        ("delta", "idle", []),
    ]
    assert (hosts[0]["rx_bps"], hosts[0]["tx_bps"]) == (4000.0, 2000.0)
    assert [h["backlog"] for h in hosts] == [0, 0, 0, 0]
    # A host whose sampler is writing out its spool says so, whatever its runs say.
    Host.objects.filter(name="beta").update(backlog=42)
    beta = next(h for h in api("/api/hosts") if h["name"] == "beta")
    assert (beta["status"], beta["backlog"]) == ("catching up", 42)
    assert (hosts[1]["rx_bps"], hosts[1]["last_sample"]) == (None, "2026-11-27T12:02:00Z")
    assert hosts[3]["id"] == str(idle.pk)
    # /api/interfaces: one host's, or every host's by host name.
    assert [i["interface"] for i in api("/api/interfaces?host=beta")] == ["eth0", "wlan0"]
    everyone = [(i["hostname"], i["interface"]) for i in api("/api/interfaces")]
    assert everyone == [
        ("alpha", "eth0"),
        ("beta", "eth0"),
        ("beta", "wlan0"),
        ("gamma", "eth0"),
    ]


def test_metrics_label_every_series_with_its_host(client: Client, fleet) -> None:
    twin = start_run("eth0", host=host(uuid.UUID(int=0xABCDEF12 << 96), "alpha"))
    per_second(twin, 1, rx_bytes=5, tx_bytes=0)
    body = client.get("/metrics").content.decode()
    rx = {
        sample.labels["host"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "netmetrics_bytes_total"
        and sample.labels["class"] == "total"
        and sample.labels["direction"] == "rx"
        and sample.labels["interface"] == "eth0"
    }
    # Two hosts named alpha: each is told apart by the start of its id.
    assert rx == {"alpha (00000000)": 120_000, "alpha (abcdef12)": 5, "beta": 840}


def test_local_host_keeps_its_id_and_follows_a_rename(settings) -> None:
    first = Host.objects.local()
    assert (first.pk, first.name) == (settings.NETMETRICS_HOST_ID, settings.NETMETRICS_HOST_NAME)
    settings.NETMETRICS_HOST_NAME = "renamed"
    again = Host.objects.local()
    assert (again.pk, again.name, Host.objects.count()) == (first.pk, "renamed", 1)


def test_host_id_from_the_environment_machine_id_or_a_kept_file(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NM_HOST", "not-a-uuid")
    with pytest.raises(ImproperlyConfigured, match="NM_HOST='not-a-uuid': expected a UUID"):
        envconfig.host_id("NM_HOST", tmp_path)
    monkeypatch.setenv("NM_HOST", str(ALPHA))
    assert envconfig.host_id("NM_HOST", tmp_path) == ALPHA
    monkeypatch.delenv("NM_HOST")
    machine_id = tmp_path / "machine-id"
    monkeypatch.setattr(envconfig, "MACHINE_ID", machine_id)
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    derived = envconfig.host_id("NM_HOST", tmp_path)
    # Not the machine id itself, and the same on every call.
    assert derived.hex != "3d1219c7c4c5404aaa1f6d2a48adfda4" and derived.version == 4
    assert envconfig.host_id("NM_HOST", tmp_path) == derived
    machine_id.unlink()  # no machine id (a minimal container): one made and kept
    kept = envconfig.host_id("NM_HOST", tmp_path / "var")
    assert (tmp_path / "var" / "host_id").read_text() == str(kept)
    assert envconfig.host_id("NM_HOST", tmp_path / "var") == kept != derived


@pytest.mark.django_db(transaction=True)
def test_rows_from_before_hosts_become_this_hosts() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("metrics", "0005_run_kernel_token")])
    old = executor.loader.project_state([("metrics", "0005_run_kernel_token")]).apps
    run = old.get_model("metrics", "SamplerRun").objects.create(
        interface="eth0", hostname="oldname", mode="native", egress=True, pid=1, started_at=T0
    )
    old.get_model("metrics", "Sample").objects.create(
        run=run, interface="eth0", start=T0, timestamp=at(1), elapsed=1.0, rx_total_bytes=42
    )
    old.get_model("metrics", "MinuteRollup").objects.create(interface="eth0", start=T0)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    [kept] = Host.objects.all()
    assert (kept.pk, kept.name) == (settings.NETMETRICS_HOST_ID, "oldname")
    assert SamplerRun.objects.get().host == kept
    assert Sample.objects.get().host == kept and Sample.objects.get().rx_total_bytes == 42
    assert MinuteRollup.objects.get().host == kept
