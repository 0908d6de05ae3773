"""GET /metrics: the cumulative counters and sampler liveness in Prometheus text format.

This lets an existing Prometheus and Grafana scrape netmetrics instead of polling the REST API.
For each interface of each host it exposes the run that speaks for it
(``SamplerRun.objects.speaking()``, as every other endpoint), read in one query.

Every series has a ``host`` label, the host's name, so that one central web server of a fleet
exposes every host in one scrape: Prometheus then needs one target, not one per host, and a
host that is down shows as ``sampler_up`` 0 rather than as a failed scrape of its own. A name
that two hosts share is followed by the first 8 characters of each one's id ("web (1a2b3c4d)"),
so that their series stay apart; ``netmetrics_sampler_start_time_seconds`` carries the full
``host_id``.

The metric names and labels below are a public contract: dashboards and alerts are built on
them, so rename nothing without a deprecation period.

``netmetrics_packets_total{host, interface, direction, class}`` (counter)
``netmetrics_bytes_total{host, interface, direction, class}`` (counter)
    Frames and bytes counted since the sampler run started. ``direction`` is ``rx`` or ``tx``;
    ``tx`` series exist only when the run measures egress (they would be a misleading 0
    otherwise). ``class`` is one of bpf.classes.CLASSES; ``total`` is every frame and the other
    classes overlap (a DNS-over-UDP packet is ipv4, udp and dns), so never sum over ``class``.
    A sampler restart starts a new run from zero, which Prometheus' ``rate()`` and
    ``increase()`` treat as a counter reset.
``netmetrics_tcp_retransmits_total{host, interface}`` (counter)
    TCP segments retransmitted by connections of the interface's addresses, since the run
    started (see the README's TCP health section for what counts).
``netmetrics_sampler_up{host, interface}`` (gauge)
    1 while the sampler is live (SamplerRun.is_running: not stopped, and a sample newer than
    LIVE_INTERVALS intervals), else 0.
``netmetrics_last_sample_timestamp_seconds{host, interface}`` (gauge)
    Unix time of the newest sample; ``time() - it`` is how stale the counters are.
``netmetrics_sampler_start_time_seconds{host, interface, mode, egress, hostname, host_id}`` (gauge)
    Unix time the run started, i.e. since when the counters count; ``mode`` is ``native``,
    ``skb`` or ``host`` (the host total), ``egress`` ``true`` or ``false``, ``hostname`` the
    host's name (as ``host`` but never suffixed), ``host_id`` its id.
``netmetrics_alert_active{host, interface, rule, metric}`` (gauge)
    1 for each open alert (alerts/models.py): the rule's name and metric, on the host and
    interface it is open on. No series while no alert is open (the family is there, empty): a
    closed alert's series ends, so ``netmetrics_alert_active == 1`` is what to alert on, and
    ``count(netmetrics_alert_active) or vector(0)`` counts them.
``netmetrics_host_total_member{host, interface}`` (gauge)
    With a host total (``interface="all"``, the sum of the interfaces that carry nobody else's
    traffic): 1 for each interface of that host its latest sample sums, 0 for one it leaves out
    (a bridge's or bond's port whose master is counted). Sum ``interface="all"``'s series, or
    only the interfaces marked 1, never every interface: that counts a bridge's traffic twice.

The counters carry no ``_created`` series: in the text format each would be one more gauge per
counter (40 per interface) repeating ``netmetrics_sampler_start_time_seconds``.

An interface whose newest run has stopped keeps its last counters, with ``sampler_up`` 0, so
a stopped sampler shows as down rather than as vanished series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from uuid import UUID

from django.db import DatabaseError
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rest_framework.request import Request

from alerts.models import Alert
from bpf.classes import CLASSES, counter_name
from metrics.api.views import TEXT_503, PlainTextView
from metrics.models import Host, SamplerRun

COUNTER_LABELS = ["host", "interface", "direction", "class"]
SERIES_LABELS = ["host", "interface"]


def latest_runs() -> list[SamplerRun]:
    """Per interface of each host, the run speaking for it, with its last sample (if still
    kept): one query."""
    runs = SamplerRun.objects.speaking().filter(last_sample__isnull=False)
    return list(runs.order_by("host__name", "host_id", "interface"))


def host_labels(hosts: Iterable[Host]) -> dict[UUID, str]:
    """Each host's ``host`` label: its name, followed by the start of its id when another of
    these hosts has the same name."""
    names = {host.pk: host.name for host in hosts}
    shared = Counter(names.values())
    return {
        host: name if shared[name] == 1 else f"{name} ({str(host)[:8]})"
        for host, name in names.items()
    }


class SamplerRunCollector(Collector):
    """Builds the families from the database at each scrape; holds no state between scrapes."""

    def __init__(self, now: Callable[[], datetime] = timezone.now) -> None:
        self._now = now

    def collect(self) -> Iterator[Metric]:
        # Before yielding anything: a database error aborts the whole scrape.
        runs = latest_runs()
        alerts = list(Alert.still_open())
        hosts = host_labels([*(run.host for run in runs), *(alert.host for alert in alerts)])
        now = self._now()
        families = {
            unit: CounterMetricFamily(
                f"netmetrics_{unit}",
                f"{unit.capitalize()} counted since the sampler run started, by direction and "
                "class (classes overlap; total is every frame).",
                labels=COUNTER_LABELS,
            )
            for unit in ("packets", "bytes")
        }
        up = GaugeMetricFamily(
            "netmetrics_sampler_up",
            "1 while the interface's sampler is writing samples "
            f"(one newer than {SamplerRun.LIVE_INTERVALS} intervals).",
            labels=SERIES_LABELS,
        )
        last_sample = GaugeMetricFamily(
            "netmetrics_last_sample_timestamp_seconds",
            "Unix time of the interface's newest sample.",
            labels=SERIES_LABELS,
        )
        retransmits = CounterMetricFamily(
            "netmetrics_tcp_retransmits",
            "TCP segments retransmitted by the interface's connections since the run started.",
            labels=SERIES_LABELS,
        )
        started = GaugeMetricFamily(
            "netmetrics_sampler_start_time_seconds",
            "Unix time the sampler run started: the counters count from here.",
            labels=[*SERIES_LABELS, "mode", "egress", "hostname", "host_id"],
        )
        member = GaugeMetricFamily(
            "netmetrics_host_total_member",
            "1 if the host total (interface=all) sums the interface, 0 if it leaves it out.",
            labels=SERIES_LABELS,
        )
        totals = {run.host_id: run for run in runs if run.is_total}
        for run in runs:
            series = [hosts[run.host_id], run.interface]
            total = totals.get(run.host_id)
            if total is not None and run is not total:
                member.add_metric(series, 1 if run.interface in total.members else 0)
            for unit, family in families.items():
                for direction in run.directions:
                    for cls in CLASSES:
                        value = getattr(run, counter_name(direction, cls, unit))
                        family.add_metric([*series, direction, cls], value)
            retransmits.add_metric(series, run.tcp_retransmits)
            up.add_metric(series, 1 if run.is_running(now) else 0)
            assert run.last_sample is not None  # latest_runs(): runs with a sample
            last_sample.add_metric(series, run.last_sample.timestamp.timestamp())
            egress = "true" if run.egress else "false"
            started.add_metric(
                [*series, run.mode, egress, run.host.name, str(run.host_id)],
                run.started_at.timestamp(),
            )
        yield families["packets"]
        yield families["bytes"]
        yield retransmits
        yield up
        yield last_sample
        yield started
        if totals:
            yield member
        active = GaugeMetricFamily(
            "netmetrics_alert_active",
            "1 for each open alert: its rule, the rule's metric, and where it is open.",
            labels=[*SERIES_LABELS, "rule", "metric"],
        )
        for alert in alerts:
            active.add_metric(
                [hosts[alert.host_id], alert.interface, alert.rule.name, alert.rule.metric], 1
            )
        yield active


# Only our collector: no process_*/python_* metrics of whichever web worker answers the scrape.
# auto_describe stays off, so registering does not query the database at import.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(SamplerRunCollector())


class MetricsView(PlainTextView):
    """The exposition; 503 when the database does not answer, so the scrape fails visibly
    (``up`` 0 in Prometheus) with the cause in the body, instead of a 500 page.

    A DRF view (GET only, Accept ignored) only so that /metrics is in the OpenAPI schema.
    """

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description=f"Prometheus text format ({CONTENT_TYPE_LATEST})"
            ),
            (503, "text/plain"): TEXT_503,
        }
    )
    def get(self, request: Request) -> HttpResponse:
        try:
            body = generate_latest(REGISTRY)
        except DatabaseError as exc:
            return HttpResponse(
                f"database unavailable: {exc}", status=503, content_type="text/plain"
            )
        return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


metrics_view = MetricsView.as_view()
