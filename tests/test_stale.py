"""The stale rule, as the web process's worker evaluates it (alerts/stale.py)."""

from __future__ import annotations

import pytest

from alerts import stale
from alerts.models import Alert, AlertRule, Notification
from metrics.models import Host, SamplerRun
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db


def stale_rule(**fields: object) -> AlertRule:
    return AlertRule.objects.create(
        **{
            "name": "not writing",
            "metric": "stale",
            "level": 30,
            "clear_level": 10,
            "webhook": "http://127.0.0.1:9/hook",
            **fields,
        }
    )


def sample_at(run: SamplerRun, seconds: float, packets: int) -> None:
    """A one-second sample of run ending `seconds` after T0."""
    run.record(counters(rx_total_packets=packets), at(seconds), 1.0)


def transitions() -> list[tuple[str, str, float, float]]:
    return list(
        Notification.objects.order_by("pk").values_list(
            "event", "alert__interface", "alert__value", "alert__peak"
        )
    )


def test_an_old_last_sample_opens_an_alert_and_a_fresh_one_closes_it() -> None:
    stale_rule()
    run = start_run()
    sample_at(run, 1, 10)
    stale.evaluate(at(31))  # 30 s old: not more than level
    assert not Alert.objects.exists()
    stale.evaluate(at(41))
    stale.evaluate(at(46))  # still open: its peak grows, nothing is announced again
    alert = Alert.objects.get()
    assert (alert.interface, alert.started_at, alert.value, alert.peak, alert.ended_at) == (
        "eth0",
        at(41),
        40.0,
        45.0,
        None,
    )
    sample_at(run, 50, 20)  # the sampler writes again
    stale.evaluate(at(55))  # 5 s old: under clear_level
    alert.refresh_from_db()
    assert (alert.ended_at, alert.peak) == (at(55), 45.0)
    assert transitions() == [("opened", "eth0", 40.0, 45.0), ("closed", "eth0", 40.0, 45.0)]


def test_it_stays_open_between_the_two_levels() -> None:
    stale_rule()
    run = start_run()
    sample_at(run, 1, 10)
    stale.evaluate(at(41))
    sample_at(run, 50, 20)
    stale.evaluate(at(65))  # 15 s old: under level, not under clear_level
    assert Alert.objects.get().ended_at is None


def test_a_run_stopped_cleanly_is_no_outage() -> None:
    stale_rule()
    run = start_run()
    sample_at(run, 1, 10)
    stale.evaluate(at(41))
    run.stop(at(42))
    stale.evaluate(at(100))
    assert Alert.objects.get().ended_at == at(100)
    other = start_run("eth1")
    sample_at(other, 1, 10)
    other.stop(at(2))
    stale.evaluate(at(200))
    assert Alert.objects.count() == 1


def test_the_rule_picks_its_series_and_a_disabled_rule_closes_its_alerts() -> None:
    other_host = Host.objects.create(id="00000000-0000-0000-0000-000000000002", name="b")
    for run in (start_run(), start_run("all"), start_run("eth0", host=other_host)):
        sample_at(run, 1, 10)
    rule = stale_rule(host=Host.objects.local())
    stale.evaluate(at(41))
    assert list(Alert.objects.values_list("host__name", "interface")) == [
        (Host.objects.local().name, "eth0")  # not the host total, not the other host
    ]
    total = stale_rule(name="total", interface="all")
    stale.evaluate(at(42))
    assert Alert.objects.get(rule=total).interface == "all"
    rule.enabled = False
    rule.save()
    stale.evaluate(at(43))
    assert Alert.objects.get(rule=rule).ended_at == at(43)
    assert Alert.objects.get(rule=total).ended_at is None


def test_a_second_process_opening_the_same_alert_is_quiet() -> None:
    rule = stale_rule()
    run = start_run()
    sample_at(run, 1, 10)
    stale.evaluate(at(41))
    stale._open(rule, run, at(41), 40.0)  # what another web process's evaluation would do
    assert Alert.objects.count() == 1
    assert transitions() == [("opened", "eth0", 40.0, 40.0)]
