"""Alerts where operators look: GET /api/alerts (open and recent) and /metrics'
netmetrics_alert_active."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from alerts.live import open_alert_ids
from alerts.models import Alert, AlertRule
from metrics.models import Host, Series
from metrics.relay import SampleRelay
from tests.samples import T0, at
from tests.test_exposition import key, scrape

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts() -> list[Alert]:
    """busy on eth0: closed at 20 s, open again from 30 s; quiet on wlan0 of another host: open
    from 40 s."""
    host = Host.objects.local()
    other = Host.objects.create(id="00000000-0000-0000-0000-000000000002", name="other")
    busy = AlertRule.objects.create(name="busy", metric="rx_bps", level=8000, clear_level=4000)
    quiet = AlertRule.objects.create(
        name="quiet", metric="total_pps", condition="below", level=1, clear_level=2
    )
    first = Alert.open(busy, Series(host.pk, "eth0"), at(10), 9000.0)
    first.peak = 12000.0
    first.close(at(20))
    return [
        first,
        Alert.open(busy, Series(host.pk, "eth0"), at(30), 8500.0),
        Alert.open(quiet, Series(other.pk, "wlan0"), at(40), 0.5),
    ]


def test_open_and_recent_alerts(api, alerts) -> None:
    first, again, quiet = alerts
    host = Host.objects.local()
    expected_first = {
        "id": first.pk,
        "rule": "busy",
        "rule_id": first.rule_id,
        "metric": "rx_bps",
        "condition": "above",
        "level": 8000.0,
        "clear_level": 4000.0,
        "baseline": False,
        "host": host.name,
        "host_id": str(host.pk),
        "interface": "eth0",
        "started_at": "2026-11-27T12:00:10Z",
        "ended_at": "2026-11-27T12:00:20Z",
        "value": 9000.0,
        "peak": 12000.0,
    }
    data = api("/api/alerts")
    assert [(a["id"], a["rule"], a["host"], a["ended_at"]) for a in data["open"]] == [
        (quiet.pk, "quiet", "other", None),
        (again.pk, "busy", host.name, None),
    ]
    assert data["recent"] == [expected_first]
    assert api("/api/alerts?limit=0")["recent"] == []
    mine = api(f"/api/alerts?host={host.name}")
    assert [a["id"] for a in mine["open"]] == [again.pk]


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("limit=-1", {"limit": ["Ensure this value is greater than or equal to 0."]}),
        ("limit=201", {"limit": ["Ensure this value is less than or equal to 200."]}),
        ("limit=x", {"limit": ["A valid integer is required."]}),
        (
            "host=nowhere",
            {
                "host": [
                    "unknown host 'nowhere': no host has this id or name (GET /api/hosts "
                    "lists them)"
                ]
            },
        ),
    ],
)
def test_bad_parameters_are_a_400_naming_them(api, query, errors) -> None:
    assert api(f"/api/alerts?{query}", 400) == errors


def test_metrics_has_one_series_per_open_alert(client, alerts) -> None:
    series, families = scrape(client)
    assert {k: v for k, v in series.items() if k[0] == "netmetrics_alert_active"} == {
        key("netmetrics_alert_active", interface="eth0", rule="busy", metric="rx_bps"): 1.0,
        key(
            "netmetrics_alert_active",
            host="other",
            interface="wlan0",
            rule="quiet",
            metric="total_pps",
        ): 1.0,
    }
    for alert in alerts[1:]:
        alert.close(T0 + timedelta(minutes=1))
    series, families = scrape(client)
    assert "netmetrics_alert_active" in families
    assert not [k for k in series if k[0] == "netmetrics_alert_active"]


def test_the_relay_sends_the_open_alerts_once_per_change(alerts) -> None:
    relay = SampleRelay()
    relay.open_alerts = open_alert_ids()
    assert relay._alerts_changed() is None  # as at subscribe
    alerts[1].close(T0 + timedelta(minutes=1))
    message = relay._alerts_changed()
    assert message is not None
    assert message["type"] == "alerts"
    assert [a["id"] for a in message["alerts"]] == [alerts[2].pk]
    assert message["alerts"][0]["rule"] == "quiet"
    assert relay._alerts_changed() is None  # once


def test_the_admin_lists_rules_and_alerts(client, alerts) -> None:
    client.force_login(User.objects.create_superuser("root", password="pw"))
    rules = client.get("/admin/alerts/alertrule/")
    assert rules.status_code == 200
    assert [r.name for r in rules.context["cl"].result_list] == ["busy", "quiet"]
    listed = client.get("/admin/alerts/alert/")
    assert listed.status_code == 200
    assert [a.pk for a in listed.context["cl"].result_list] == [a.pk for a in alerts[::-1]]
    assert client.get("/admin/alerts/alert/add/").status_code == 403
