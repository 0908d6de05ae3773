"""The stale rule: an interface whose sampler stopped writing without saying so.

The sampler cannot report its own silence, so the web process evaluates it (alerts/worker.py,
every STALE_EVERY seconds). For each enabled rule on "stale" and each series it matches, the
run that speaks for the series (SamplerRun.objects.speaking()) decides:
- open, when the run was not stopped cleanly (stopped_at unset: killed, crashed, hung, or its
  host cut off from the central database) and its last sample is more than `level` seconds old;
  the alert's value and peak are that age in seconds, the peak growing while it stays open;
- close, once a sample is less than `clear_level` seconds old, or the run was stopped cleanly
  (an operator's stop is no outage), or the rule no longer applies (disabled, changed, the
  series gone).

Several web processes may evaluate at once: the partial unique constraint on open alerts lets
one of them open it (the others' IntegrityError is expected), and Alert.close lets one close it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from django.db import IntegrityError

from alerts.models import Alert, AlertRule
from metrics.models import SamplerRun

STALE_EVERY = 5.0  # seconds between evaluations: a level below this is late by up to it


def evaluate(now: datetime) -> None:
    """Open and close the stale rules' alerts as the runs' last samples say at `now`."""
    rules = list(AlertRule.objects.filter(metric=AlertRule.STALE, enabled=True))
    open_alerts = {
        (alert.rule_id, alert.host_id, alert.interface): alert
        for alert in Alert.objects.filter(rule__metric=AlertRule.STALE, ended_at=None)
    }
    runs = list(SamplerRun.objects.speaking()) if rules else []
    for rule in rules:
        for run in runs:
            if not rule.matches(run.series):
                continue
            assert run.last_sample is not None  # speaking(): runs that recorded something
            age = (now - run.last_sample.timestamp).total_seconds()
            alert = open_alerts.pop((rule.pk, run.host_id, run.interface), None)
            if alert is None:
                if run.stopped_at is None and age > rule.level:
                    _open(rule, run, now, age)
            elif run.stopped_at is not None or age < rule.clear_level:
                alert.close(now)
            elif age > alert.peak:
                Alert.objects.filter(pk=alert.pk, ended_at=None).update(peak=age)
    for alert in open_alerts.values():  # its rule no longer applies to a running series
        alert.close(now)


def _open(rule: AlertRule, run: SamplerRun, now: datetime, age: float) -> None:
    with contextlib.suppress(IntegrityError):  # another web process opened it first
        Alert.open(rule, run.series, now, age)
