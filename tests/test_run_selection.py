"""One rule picks the run that speaks for an interface, and every endpoint follows it.

The run with the interface's newest sample speaks, even when a newer run exists: a sampler that
has just started (no sample yet) or one killed after a single sample must not take over the
totals, mode and flow table that realtime, /api/interfaces, /metrics and the flows show.
"""

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from metrics.models import SamplerRun
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db


def run(pid: int, flow_table: int, started: float) -> SamplerRun:
    run = start_run(started_at=at(started))
    SamplerRun.objects.filter(pk=run.pk).update(pid=pid, flow_table=flow_table)
    run.refresh_from_db()
    return run


@pytest.fixture(params=["newer run without samples", "newer run with an older sample"])
def speaker(request) -> SamplerRun:
    """eth0: an older run (pid 1111) with the newest sample, and a newer run (pid 2222)."""
    older = run(1111, 64, started=0)
    newer = run(2222, 128, started=60)
    if request.param == "newer run with an older sample":
        newer.record(counters(rx_total_bytes=7, rx_total_packets=1), at(61), 1.0)
    older.record(counters(rx_total_bytes=900, rx_total_packets=9), at(100), 1.0)
    return older


def metric(client: Client, name: str) -> dict[frozenset, float]:
    body = client.get("/metrics").content.decode()
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    }


def test_every_endpoint_answers_for_the_run_with_the_newest_sample(
    api, client: Client, speaker: SamplerRun
) -> None:
    assert SamplerRun.objects.latest_for("eth0") == speaker
    assert api("/api/metrics/realtime?iface=eth0")["total_bytes"] == 900
    assert api("/api/stats/summary?iface=eth0")["total_bytes"] == 900
    [state] = api("/api/interfaces")
    assert (state["run"]["pid"], state["last_sample"]) == (1111, "2026-11-27T12:01:40Z")
    assert api("/api/flows/top?iface=eth0&window=all")["flow_table"] == 64
    assert api("/api/flows/live?iface=eth0")["flow_table"] == 64
    started = metric(client, "netmetrics_sampler_start_time_seconds")
    assert list(started.values()) == [at(0).timestamp()]
    labels = {"interface": "eth0", "direction": "rx", "class": "total"}
    rx_total = frozenset({"host": settings.NETMETRICS_HOST_NAME, **labels}.items())
    assert metric(client, "netmetrics_bytes_total")[rx_total] == 900


def test_a_run_whose_samples_expired_still_speaks_when_it_is_the_only_one(api) -> None:
    only = run(1111, 64, started=0)
    only.record(counters(rx_total_bytes=900, rx_total_packets=9), at(100), 1.0)
    only.samples.all().delete()  # retention: the run's row and totals are kept
    assert [s["run"]["pid"] for s in api("/api/interfaces")] == [1111]
    assert api("/api/stats/summary?iface=eth0")["total_bytes"] == 900
    assert "kept any more" in api("/api/metrics/realtime?iface=eth0", status=404)["detail"]


def test_a_run_that_never_sampled_speaks_for_nothing(api) -> None:
    run(2222, 128, started=0)
    assert api("/api/interfaces") == []
    assert "start the sampler" in api("/api/metrics/realtime", status=404)["detail"]
    assert SamplerRun.objects.latest_for(None) is None
