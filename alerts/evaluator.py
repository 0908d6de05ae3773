"""The sampler's side of the alert rules: after each tick it has written, evaluate the enabled
rules on the samples just written, and open and close alerts (Alert.open/close write the
notifications in the same transaction).

No tick reads history: the rules and the quota plans are read again every RELOAD_SECONDS, a
baseline once an hour per series (alerts/baseline.py), the bytes a cycle has carried once per
cycle (alerts/quota.py); the open alerts of this host once at start, so that a restarted
sampler continues them rather than opening them again. An error (the database, a rule that
cannot be evaluated) is logged once, not once a tick, and never stops the sampler: the next
tick tries again.

Rules on `stale` are the web process's (a sampler that does not write cannot say so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from alerts.baseline import Baselines
from alerts.models import Alert, AlertRule
from alerts.quota import QuotaMeters
from alerts.tracker import Levels, Tracker
from alerts.values import rate_of
from metrics.models import Sample, Series

log = logging.getLogger("netmetrics.alerts")

# How often rule and plan changes (the admin, the API) reach a running sampler, in seconds; an
# open alert's peak is stored as often while it changes.
RELOAD_SECONDS = 5.0


class AlertEvaluator:
    """The rules' state for the samples of one host (the sampler's)."""

    def __init__(self, host_id: UUID, clock: Callable[[], float] = time.monotonic) -> None:
        self.host_id = host_id
        self.clock = clock
        self.rules: list[AlertRule] = []
        self.trackers: dict[tuple[int, Series], Tracker] = {}
        self.quota = QuotaMeters()
        self.baselines = Baselines()
        self._matching: dict[Series, list[AlertRule]] = {}
        self._loaded_at: float | None = None  # None: the open alerts are not loaded yet
        self._failed = False  # the last evaluation failed (and said so)
        self._bad_rules: set[int] = set()  # rules whose evaluation failed (and said so)

    def evaluate(self, samples: Sequence[Sample]) -> None:
        """Evaluate the rules on a tick's samples (just written); never raises."""
        try:
            if self._loaded_at is None:
                self._load_open_alerts()
            if self.clock() - (self._loaded_at or 0.0) >= RELOAD_SECONDS:
                self.reload()
            for sample in samples:
                self._evaluate(sample)
        except Exception as exc:  # whatever it is, the sampler goes on counting
            if not self._failed:
                if isinstance(exc, DatabaseError):
                    log.warning("alert rules not evaluated (%s); trying again each tick", exc)
                else:
                    log.exception("alert rules not evaluated; trying again each tick")
                self._failed = True
            if not connection.in_atomic_block:  # a broken connection is reopened on next use
                connection.close_if_unusable_or_obsolete()
            return
        if self._failed:
            log.info("alert rules evaluated again")
            self._failed = False

    def stop(self) -> None:
        """The sampler stops: store the open alerts' peaks (they stay open: the next sampler
        continues them)."""
        try:
            self._store_peaks()
        except DatabaseError as exc:
            log.warning("the open alerts' peaks were not stored (%s)", exc)

    def _load_open_alerts(self) -> None:
        alerts = Alert.objects.filter(host_id=self.host_id, ended_at=None).select_related("rule")
        self.trackers = {
            (alert.rule_id, alert.series): Tracker(alert, peak_stored=alert.peak)
            for alert in alerts
        }
        self.reload()

    def reload(self) -> None:
        """Read the rules and plans again; close the alerts of rules disabled or no longer
        matching their interface, and store the peaks that changed."""
        rules = AlertRule.objects.filter(enabled=True).exclude(metric=AlertRule.STALE)
        self.rules = list(rules.filter(Q(host=None) | Q(host_id=self.host_id)))
        self.quota.load()
        self._matching = {}
        by_pk = {rule.pk: rule for rule in self.rules}
        now = timezone.now()
        for key, tracker in list(self.trackers.items()):
            rule = by_pk.get(key[0])
            if rule is not None and rule.matches(key[1]):
                if tracker.alert is not None:
                    tracker.alert.rule = rule  # its payload says what the rule is now
                continue
            del self.trackers[key]
            if tracker.alert is not None and AlertRule.objects.filter(pk=key[0]).exists():
                tracker.alert.close(now)  # (a deleted rule took its alerts with it)
        self._store_peaks()
        self.baselines.forget({series for _, series in self.trackers})
        self._loaded_at = self.clock()

    def _store_peaks(self) -> None:
        for tracker in self.trackers.values():
            if tracker.alert is not None and tracker.peak_changed:
                Alert.objects.filter(pk=tracker.alert.pk).update(peak=tracker.alert.peak)
                tracker.peak_stored = tracker.alert.peak

    def _rules_of(self, series: Series) -> list[AlertRule]:
        if series not in self._matching:
            self._matching[series] = [rule for rule in self.rules if rule.matches(series)]
        return self._matching[series]

    def _evaluate(self, sample: Sample) -> None:
        series = Series(sample.host_id, sample.interface)
        rules = self._rules_of(series)
        counters = sample.counters()
        quota = None
        if any(rule.metric == AlertRule.QUOTA for rule in rules):
            quota = self.quota.percent(sample)
        else:
            self.quota.forget(series)  # counted from the tiers again once a rule needs it
        for rule in rules:
            try:
                if rule.metric == AlertRule.QUOTA:
                    value = quota
                else:
                    value = rate_of(rule.metric, counters, sample.elapsed)
                levels = self._levels(rule, series, sample.start)
                if value is not None and levels is not None:
                    self._step(rule, series, levels, value, sample)
            except DatabaseError:
                raise
            except Exception:  # a rule the database holds that cannot work: say so once
                if rule.pk not in self._bad_rules:
                    log.exception("alert rule %r cannot be evaluated; skipping it", rule.name)
                    self._bad_rules.add(rule.pk)
            else:
                self._bad_rules.discard(rule.pk)

    def _levels(self, rule: AlertRule, series: Series, moment: datetime) -> Levels | None:
        """The rule's levels as values; None while a baseline rule has no baseline."""
        if not rule.baseline:
            return Levels(rule.level, rule.clear_level)
        base = self.baselines.of(series, rule.metric, moment)
        return None if base is None else Levels(rule.level * base, rule.clear_level * base)

    def _step(
        self, rule: AlertRule, series: Series, levels: Levels, value: float, sample: Sample
    ) -> None:
        tracker = self.trackers.setdefault((rule.pk, series), Tracker())
        action = tracker.step(rule, levels, value, sample.start, sample.timestamp)
        if action == "open":
            tracker.alert = Alert.open(rule, series, sample.timestamp, value)
            tracker.peak_stored = value
            tracker.beyond_since = None
            log.info("alert %r opened on %s: %g", rule.name, series.interface, value)
        elif action == "close" and tracker.alert is not None:
            tracker.alert.close(sample.timestamp)
            log.info("alert %r closed on %s: %g", rule.name, series.interface, value)
            tracker.alert = tracker.peak_stored = None
