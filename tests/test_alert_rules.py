"""Alert rule definitions: a bad one gets a clear error, as admin form errors and as a 400 of
/api/alerts/rules, never a 500; who may add rules; the default quota rules."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from access.rules import REQUIRED, VIEWER_GROUP
from alerts.models import AlertRule
from alerts.quota_rules import default_rule_name
from metrics.models import Host
from usage.models import InterfacePlan

pytestmark = pytest.mark.django_db

ADD = "/admin/alerts/alertrule/add/"
RULES = "/api/alerts/rules"

GOOD = {
    "name": "busy",
    "enabled": True,
    "interface": "eth0",
    "metric": "rx_bps",
    "condition": "above",
    "level": 1000,
    "clear_level": 800,
    "duration": 0,
    "baseline": False,
    "webhook": "",
    "emails": "",
}

# (what changes, the field blamed, its message)
BAD = [
    (
        {"clear_level": 1200},
        "clear_level",
        "must be at most level for a rule on 'above': the alert closes once the value is back "
        "below it (1200 > 1000)",
    ),
    (
        {"condition": "below", "clear_level": 900},
        "clear_level",
        "must be at least level for a rule on 'below': the alert closes once the value is back "
        "above it (900 < 1000)",
    ),
    ({"level": -5}, "level", "may not be negative: every metric is 0 or more (-5)"),
    ({"clear_level": -1}, "clear_level", "may not be negative: every metric is 0 or more (-1)"),
    (
        {"metric": "quota_percent", "level": 90, "clear_level": 90},
        "metric",
        "no interface this rule matches has a quota: set one on its plan (Usage, Interface "
        "plans) first",
    ),
    (
        {"metric": "stale", "baseline": True},
        "baseline",
        "only a rate has a baseline (the median of its hourly averages): not stale",
    ),
    (
        {"metric": "stale", "condition": "below", "clear_level": 1000},
        "condition",
        "a stale rule fires when the last sample is older than level seconds: its condition is "
        "'above'",
    ),
    (
        {"interface": "eth 0"},
        "interface",
        "'eth 0' is not a valid interface name: names have no '/', ':' or whitespace and are not "
        "'.' or '..' (ip -br link lists them)",
    ),
    ({"interface": "en/*"}, "interface", None),
    ({"emails": "ops@example.com, nobody"}, "emails", "'nobody' is not an e-mail address"),
    ({"webhook": "not a url"}, "webhook", None),
    ({"metric": "bogus"}, "metric", None),
    ({"level": "lots"}, "level", None),
    ({"name": ""}, "name", None),
]


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


@pytest.mark.parametrize(("change", "field", "message"), BAD)
def test_admin_shows_a_bad_rule_as_a_form_error(staff_client, change, field, message) -> None:
    response = staff_client.post(ADD, {**GOOD, **change})
    assert response.status_code == 200  # the form again, not a redirect (nor a 500)
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    if message is not None:
        assert errors[field] == [message]
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(("change", "field", "message"), BAD)
def test_api_answers_a_bad_rule_with_a_400_naming_the_field(
    staff_client, change, field, message
) -> None:
    response = staff_client.post(RULES, {**GOOD, **change}, content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    if message is not None:
        assert errors[field] == [message]
    assert not AlertRule.objects.exists()


def test_a_good_rule_is_added_by_the_admin_and_the_api(staff_client) -> None:
    response = staff_client.post(ADD, GOOD)
    assert response.status_code == 302
    host = Host.objects.local()
    response = staff_client.post(
        RULES, {**GOOD, "name": "busy too", "host": str(host.pk)}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    made = AlertRule.objects.get(name="busy too")
    assert response.json() == {
        **GOOD,
        "id": made.pk,
        "name": "busy too",
        "host": str(host.pk),
        "host_name": host.name,
        "level": 1000.0,
        "clear_level": 800.0,
    }
    listed = staff_client.get(RULES).json()
    assert [rule["name"] for rule in listed] == ["busy", "busy too"]


def test_quota_rule_on_an_interface_with_a_quota_is_accepted(staff_client) -> None:
    InterfacePlan.objects.create(host=Host.objects.local(), interface="eth0", quota_bytes=10**9)
    rule = {**GOOD, "name": "half", "metric": "quota_percent", "level": 50, "clear_level": 50}
    response = staff_client.post(RULES, rule, content_type="application/json")
    assert response.status_code == 201, response.content
    pattern = {**rule, "name": "any eth", "interface": "eth*"}
    assert staff_client.post(RULES, pattern, content_type="application/json").status_code == 201
    other = {**rule, "name": "wlan", "interface": "wlan0"}
    assert staff_client.post(RULES, other, content_type="application/json").status_code == 400


def test_viewers_read_rules_and_only_those_allowed_add_them(client: Client, settings) -> None:
    settings.NETMETRICS_AUTH = REQUIRED
    AlertRule.objects.create(name="busy", metric="rx_bps", level=2, clear_level=1)
    viewer = User.objects.create_user("olga", password="pw")
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    assert client.get(RULES).status_code == 401
    client.force_login(viewer)
    assert [rule["name"] for rule in client.get(RULES).json()] == ["busy"]
    response = client.post(RULES, {**GOOD, "name": "mine"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "adding alert rules takes the alerts.add_alertrule permission, or staff"
    }
    viewer.user_permissions.add(Permission.objects.get(codename="add_alertrule"))
    viewer = User.objects.get(pk=viewer.pk)
    client.force_login(viewer)
    response = client.post(RULES, {**GOOD, "name": "mine"}, content_type="application/json")
    assert response.status_code == 201, response.content


def test_a_quota_gets_default_rules_once_and_they_stay_as_edited() -> None:
    host = Host.objects.local()
    plan = InterfacePlan.objects.create(host=host, interface="eth0")
    assert not AlertRule.objects.exists()  # no quota, no rules
    plan.quota_bytes = 10**9
    plan.save()
    rules = AlertRule.objects.order_by("level")
    assert [(r.name, r.metric, r.level, r.clear_level, r.host_id, r.interface) for r in rules] == [
        (default_rule_name(plan, p), "quota_percent", p, p, host.pk, "eth0") for p in (75, 90, 100)
    ]
    AlertRule.objects.filter(level=75).update(level=80, clear_level=80)
    AlertRule.objects.filter(level=100).delete()
    plan.quota_bytes = 2 * 10**9
    plan.save()  # a quota changed, not set: the rules stay as they are
    assert list(AlertRule.objects.order_by("level").values_list("level", flat=True)) == [80, 90]
    plan.quota_bytes = None
    plan.save()
    plan.quota_bytes = 10**9
    plan.save()  # set again: the missing one is made again, the edited one kept
    assert list(AlertRule.objects.order_by("level").values_list("level", flat=True)) == [
        80,
        90,
        100,
    ]
