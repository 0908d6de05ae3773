"""Alert rules evaluated on the samples just written: levels, duration, hysteresis, peaks,
quota and baseline, a restart that continues open alerts, and errors that never stop a tick."""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import OperationalError

from alerts.baseline import _hour_of
from alerts.evaluator import RELOAD_SECONDS, AlertEvaluator
from alerts.models import Alert, AlertRule, Notification
from alerts.values import rate_of
from metrics.models import Host, HourRollup, Sample, SamplerRun, Series
from metrics.sampler import Sampler
from tests.samples import T0, at, counters, start_run
from tests.test_sampler import FakeKernel
from usage.models import InterfacePlan

pytestmark = pytest.mark.django_db


class Clock:
    """The evaluator's monotonic clock: rules are reloaded when the test moves it on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Feed:
    """One run's samples, written at a chosen rx rate, one second each, then evaluated."""

    def __init__(self, evaluator: AlertEvaluator, run: SamplerRun, second: int = 0) -> None:
        self.evaluator = evaluator
        self.run = run
        self.second = second
        self.totals = {"rx_total_bytes": 0, "rx_total_packets": 0}

    def send(self, *rx_bps: float) -> list[Sample]:
        written = []
        for bps in rx_bps:
            self.totals["rx_total_bytes"] += int(bps / 8)
            self.totals["rx_total_packets"] += 1
            self.second += 1
            sample = self.run.record(counters(**self.totals), at(self.second), 1.0)
            self.evaluator.evaluate([sample])
            written.append(sample)
        return written


def rule(**fields) -> AlertRule:
    defaults = {
        "name": "busy",
        "metric": "rx_bps",
        "level": 8000.0,
        "clear_level": 4000.0,
        "webhook": "http://127.0.0.1:9/hook",
        "emails": "ops@example.com",
    }
    made = AlertRule(**{**defaults, **fields})
    made.full_clean()
    made.save()
    return made


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def evaluator(clock: Clock) -> AlertEvaluator:
    return AlertEvaluator(Host.objects.local().pk, clock)


def test_opens_beyond_level_stays_open_between_levels_and_closes_below_clear_level(
    evaluator: AlertEvaluator,
) -> None:
    busy = rule()
    feed = Feed(evaluator, start_run())
    feed.send(1000, 7999)
    assert not Alert.objects.exists()
    feed.send(8000)  # at level: opens
    alert = Alert.objects.get()
    assert (alert.started_at, alert.value, alert.ended_at) == (at(3), 8000.0, None)
    feed.send(6000, 12000, 4000)  # between the levels (4000 is not below 4000): open
    assert Alert.objects.get().ended_at is None
    feed.send(3992)
    alert = Alert.objects.get()
    assert (alert.ended_at, alert.peak, alert.value) == (at(7), 12000.0, 8000.0)
    events = Notification.objects.order_by("pk").values_list("event", "channel", "target")
    assert list(events) == [
        ("opened", "webhook", busy.webhook),
        ("opened", "email", busy.emails),
        ("closed", "webhook", busy.webhook),
        ("closed", "email", busy.emails),
    ]
    closed = Notification.objects.filter(event="closed", channel="webhook").get()
    assert closed.payload == alert.payload("closed")
    assert closed.payload["alert"]["peak"] == 12000.0
    assert closed.payload["alert"]["ended_at"] == at(7).isoformat()


def test_duration_needs_consecutive_samples_beyond_level(evaluator: AlertEvaluator) -> None:
    rule(duration=3)
    feed = Feed(evaluator, start_run())
    feed.send(9000, 9000, 100, 9000, 9000)  # the streak is broken: 2 s, then 2 s
    assert not Alert.objects.exists()
    feed.send(9000)  # the third second of this streak
    assert Alert.objects.get().started_at == at(6)


def test_below_rule_keeps_the_lowest_value_as_peak(evaluator: AlertEvaluator) -> None:
    rule(condition="below", level=1000, clear_level=2000)
    feed = Feed(evaluator, start_run())
    feed.send(5000, 800, 1500, 400, 2000, 2008)
    alert = Alert.objects.get()
    assert (alert.value, alert.peak, alert.started_at, alert.ended_at) == (800, 400, at(2), at(6))


def test_a_restarted_sampler_continues_the_open_alert(clock: Clock) -> None:
    rule()
    run = start_run()
    first = Feed(AlertEvaluator(run.host_id, clock), run)
    first.send(9000, 16000)
    first.evaluator.stop()
    assert Alert.objects.get().peak == 16000.0  # stored at the stop, still open
    second = Feed(AlertEvaluator(run.host_id, clock), run, second=first.second)
    second.totals = first.totals
    second.send(20000, 1000)
    alert = Alert.objects.get()  # the same one: not opened again
    assert (alert.started_at, alert.ended_at, alert.peak) == (at(1), at(4), 20000.0)
    assert Notification.objects.filter(event="opened").count() == 2  # webhook and e-mail, once


def test_rules_are_reloaded_and_a_disabled_rule_closes_its_alert(
    evaluator: AlertEvaluator, clock: Clock
) -> None:
    feed = Feed(evaluator, start_run())
    feed.send(9000)
    busy = rule()
    feed.send(9000)
    assert not Alert.objects.exists()  # not loaded yet
    clock.now += RELOAD_SECONDS
    feed.send(9000)
    assert Alert.objects.get().ended_at is None
    busy.enabled = False
    busy.save()
    clock.now += RELOAD_SECONDS
    feed.send(9000)
    assert Alert.objects.get().ended_at is not None


def test_which_interfaces_a_rule_matches() -> None:
    host = Host.objects.local()
    other = Host.objects.create(id="00000000-0000-0000-0000-000000000001", name="other")
    series = {name: Series(host.pk, name) for name in ("eth0", "eth1", "wlan0", "all")}
    cases = {
        "": {"eth0", "eth1", "wlan0"},
        "all": {"all"},
        "eth*": {"eth0", "eth1"},
        "wlan0": {"wlan0"},
    }
    for interface, expected in cases.items():
        made = AlertRule(interface=interface)
        assert {n for n, s in series.items() if made.matches(s)} == expected, interface
    assert not AlertRule(host=other).matches(series["eth0"])
    assert AlertRule(host=host).matches(series["eth0"])


def test_each_rate_from_its_counters() -> None:
    row = counters(
        rx_total_bytes=1000,
        tx_total_bytes=500,
        rx_total_packets=10,
        tx_total_packets=4,
        rx_rst_packets=3,
        tx_rst_packets=1,
        rx_syn_packets=6,
        tx_syn_packets=2,
        tcp_retransmits=5,
        flows_dropped=7,
    )
    expected = {
        "rx_bps": 4000.0,
        "tx_bps": 2000.0,
        "total_bps": 6000.0,
        "rx_pps": 5.0,
        "tx_pps": 2.0,
        "total_pps": 7.0,
        "retransmit_rate": 2.5,
        "rst_rate": 2.0,
        "syn_rate": 4.0,
        "flows_dropped": 3.5,
    }
    assert {metric: rate_of(metric, row, 2.0) for metric in expected} == expected


def planned_run(settings, **plan: object) -> SamplerRun:
    """eth0's run, and its plan (in UTC) with the default rules at 75, 90 and 100 % of its
    quota (alerts/quota_rules.py)."""
    settings.NETMETRICS_TIME_ZONE = "UTC"
    run = start_run()
    InterfacePlan.objects.create(host=run.host, interface="eth0", **plan)
    return run


def test_quota_rule_fires_at_90_percent_counting_the_cycle_so_far(
    evaluator: AlertEvaluator, settings
) -> None:
    run = planned_run(settings, cycle_start_day=27, quota_bytes=10_000)
    # Before the sampler (and the evaluator) started: 8000 bytes this cycle, 5000 before it.
    run.record(counters(rx_total_bytes=5000), T0 - timedelta(days=1), 1.0)  # the 26th
    run.record(counters(rx_total_bytes=13_000), at(0), 1.0)
    feed = Feed(evaluator, run)
    feed.totals["rx_total_bytes"] = 13_000
    feed.send(7992)  # 999 bytes: 89.99 %
    assert list(Alert.objects.values_list("rule__level", "value")) == [(75, 89.99)]
    feed.send(8)  # 1 byte: 90 %
    alert = Alert.objects.get(rule__level=90)
    assert (alert.value, alert.started_at) == (90.0, at(2))
    assert not Alert.objects.filter(rule__level=100).exists()


def test_quota_counts_the_direction_of_the_plan_and_restarts_with_the_cycle(
    evaluator: AlertEvaluator, settings
) -> None:
    run = planned_run(settings, cycle_start_day=28, quota_bytes=1000, quota_direction="tx")
    end_of_cycle = T0.replace(day=27, hour=23, minute=59, second=58)
    run.record(counters(rx_total_bytes=900, tx_total_bytes=800), end_of_cycle, 1.0)
    assert evaluator.quota.percent(Sample.objects.get()) is None  # not loaded yet
    evaluator.evaluate(list(Sample.objects.all()))
    alert = Alert.objects.get()  # its own 800 bytes sent, counted once: 80 %
    assert (alert.rule.level, alert.value, alert.ended_at) == (75, 80.0, None)
    next_cycle = run.record(
        counters(rx_total_bytes=900, tx_total_bytes=900), end_of_cycle + timedelta(seconds=3), 1.0
    )
    evaluator.evaluate([next_cycle])
    assert Alert.objects.get().ended_at == next_cycle.timestamp  # 10 % of the new cycle
    assert Notification.objects.count() == 0  # the default rules have no receivers


def hours_of_baseline(run: SamplerRun, days: int, rx_bytes_per_hour: list[int]) -> None:
    """Hour rollups at the same hour of the day as T0 on the days before it."""
    for day, rx in zip(range(1, days + 1), rx_bytes_per_hour, strict=True):
        HourRollup.objects.create(
            host=run.host,
            interface=run.interface,
            start=T0 - timedelta(days=day),
            seconds=3600.0,
            samples=3600,
            rx_total_bytes=rx,
        )


def test_baseline_rule_is_a_multiple_of_the_median_of_the_same_hour(
    evaluator: AlertEvaluator, settings
) -> None:
    settings.NETMETRICS_TIME_ZONE = "UTC"
    run = start_run()
    # 8000, 1600 and 4000 bit/s on three of the last seven days: the median is 4000 bit/s.
    hours_of_baseline(run, 3, [3_600_000, 720_000, 1_800_000])
    rule(baseline=True, level=3, clear_level=2)
    assert evaluator.baselines.of(run.series, "rx_bps", T0) == 4000.0
    feed = Feed(evaluator, run)
    feed.send(11_992, 12_000, 8000, 7992)
    alert = Alert.objects.get()
    assert (alert.started_at, alert.ended_at, alert.value) == (at(2), at(4), 12_000.0)


def test_without_three_days_of_history_a_baseline_rule_does_not_fire(
    evaluator: AlertEvaluator, settings
) -> None:
    settings.NETMETRICS_TIME_ZONE = "UTC"
    run = start_run()
    hours_of_baseline(run, 2, [3_600_000, 3_600_000])
    rule(baseline=True, level=1, clear_level=1)
    Feed(evaluator, run).send(10**9)
    assert evaluator.baselines.of(run.series, "rx_bps", T0) is None
    assert not Alert.objects.exists()


def test_the_baseline_hour_is_the_wall_clock_hour_of_the_zone(settings) -> None:
    settings.NETMETRICS_TIME_ZONE = "Asia/Kolkata"  # UTC+5:30
    hour = _hour_of(T0)
    assert (hour.hour, hour.minute, hour.tzinfo) == (17, 0, ZoneInfo("Asia/Kolkata"))


def test_a_database_error_is_logged_once_and_never_raises(
    evaluator: AlertEvaluator, monkeypatch, caplog
) -> None:
    rule()
    feed = Feed(evaluator, start_run())

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(Alert, "open", locked)
    with caplog.at_level(logging.INFO, logger="netmetrics.alerts"):
        feed.send(9000, 9000, 9000)
        monkeypatch.undo()
        feed.send(9000)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == ("alert rules not evaluated (database is locked); trying again each tick")
    assert messages[1:] == ["alert 'busy' opened on eth0: 9000", "alert rules evaluated again"]
    assert Alert.objects.get().started_at == at(4)


def test_a_rule_that_cannot_work_is_logged_once_and_the_others_still_run(
    evaluator: AlertEvaluator, caplog
) -> None:
    AlertRule.objects.create(name="broken", metric="bogus", level=1, clear_level=1)
    rule()
    with caplog.at_level(logging.ERROR, logger="netmetrics.alerts"):
        Feed(evaluator, start_run()).send(9000, 9000)
    assert [r.getMessage() for r in caplog.records] == [
        "alert rule 'broken' cannot be evaluated; skipping it"
    ]
    assert Alert.objects.get().rule.name == "busy"


def test_the_sampler_evaluates_each_tick_it_writes(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("metrics.sampler.time.monotonic", lambda: now[0])
    rule(level=8000, clear_level=8000)  # FakeKernel: 1000 bytes a second in, 8000 bit/s
    run = start_run()
    evaluator = AlertEvaluator(run.host_id)
    sampler = Sampler(FakeKernel(), interval=1.0, rules=evaluator)
    sampler.watch(run, started=100.0)
    now[0] = 101.0
    sampler.tick()
    assert Alert.objects.get().value == 8000.0
    now[0] = 103.0  # a late tick: 1000 bytes over 2 s
    assert sampler.flush()
    alert = Alert.objects.get()
    assert run.last_sample is not None
    assert (alert.ended_at, alert.peak) == (run.last_sample.timestamp, 8000.0)
