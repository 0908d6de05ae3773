"""Alert rules (edited in the admin), the alerts they open and close, and the notifications of
those transitions waiting to be delivered (an outbox: written in the transaction that opens or
closes the alert, delivered by another thread, so a slow receiver never delays a tick)."""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from alerts.validation import rule_errors
from metrics.announce import announce
from metrics.models import Host, Series
from metrics.selection import HOST_TOTAL


class AlertRule(models.Model):
    """A condition on one metric of an interface's traffic, with hysteresis: it opens an alert
    once the value has been beyond `level` for `duration` seconds, and closes it once the value
    is back beyond `clear_level` (below it for a rule on `above`, above it for `below`)."""

    METRICS = [
        ("rx_bps", "received, bits/s"),
        ("tx_bps", "sent, bits/s"),
        ("total_bps", "received and sent, bits/s"),
        ("rx_pps", "received, packets/s"),
        ("tx_pps", "sent, packets/s"),
        ("total_pps", "received and sent, packets/s"),
        ("retransmit_rate", "TCP retransmits/s"),
        ("rst_rate", "TCP RST packets/s, both directions"),
        ("syn_rate", "TCP SYN packets/s, both directions"),
        ("flows_dropped", "flows the kernel's table had no room for, /s"),
        ("quota_percent", "the billing cycle's quota used, %"),
        ("stale", "seconds since the interface's last sample"),
    ]
    ABOVE, BELOW = "above", "below"
    CONDITIONS = [(ABOVE, "above"), (BELOW, "below")]
    QUOTA, STALE = "quota_percent", "stale"
    # The fields that say when an alert opens and closes (the admin's and the API's lists).
    CONDITION_FIELDS = ("metric", "condition", "level", "clear_level", "duration", "baseline")

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.CASCADE, help_text="empty: every host"
    )
    interface = models.CharField(
        max_length=15, blank=True, help_text="empty: every interface; 'all': the host total"
    )
    metric = models.CharField(max_length=20, choices=METRICS)
    condition = models.CharField(max_length=5, choices=CONDITIONS, default=ABOVE)
    level = models.FloatField(help_text="the value beyond which the alert opens")
    clear_level = models.FloatField(
        help_text="the value back beyond which it closes: at most level for 'above', at least "
        "level for 'below'"
    )
    duration = models.PositiveIntegerField(
        default=0, help_text="seconds the value must stay beyond level before the alert opens"
    )
    baseline = models.BooleanField(
        default=False,
        help_text="level and clear_level are multiples of the interface's own baseline (the "
        "median of the same hour over the last 7 days) instead of values",
    )
    webhook = models.URLField(blank=True, help_text="POST the JSON payload here on each change")
    emails = models.CharField(
        max_length=500, blank=True, help_text="comma-separated addresses to mail on each change"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def matches(self, series: Series) -> bool:
        """Whether the rule applies to the series: of its host (none: every host); of its
        interface, a shell pattern ('en*') or, empty, every interface, neither of which is the
        host total; 'all' is the host total alone."""
        if self.host_id is not None and self.host_id != series.host_id:
            return False
        if self.interface == HOST_TOTAL or series.interface == HOST_TOTAL:
            return self.interface == series.interface
        return not self.interface or fnmatchcase(series.interface, self.interface)

    def clean(self) -> None:
        """Refuse a definition that could never work, each error on the field to change (the
        admin's form and the API's serializer both call this)."""
        errors = rule_errors(self)
        if errors:
            raise ValidationError(errors)


class Alert(models.Model):
    """One time a rule's condition held on one interface: open until ended_at is set."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    interface = models.CharField(max_length=15)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(help_text="the metric when the alert opened")
    peak = models.FloatField(help_text="its most extreme value while open")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "host", "interface"],
                condition=models.Q(ended_at=None),
                name="one_open_alert_per_rule_and_interface",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} on {self.host.name} {self.interface}"

    @property
    def series(self) -> Series:
        return Series(self.host_id, self.interface)

    @classmethod
    def still_open(cls) -> models.QuerySet[Alert]:
        """Every open alert, the newest first, with its rule and host: /api/alerts' `open`,
        /metrics' netmetrics_alert_active and the dashboard's banner."""
        return cls.objects.filter(ended_at=None).select_related("rule", "host")

    @classmethod
    def open(cls, rule: AlertRule, series: Series, at: datetime, value: float) -> Alert:
        """A new open alert, and its 'opened' notifications, in one transaction."""
        with transaction.atomic():
            alert = cls.objects.create(
                rule=rule,
                host_id=series.host_id,
                interface=series.interface,
                started_at=at,
                value=value,
                peak=value,
            )
            alert.notify("opened", at)
            alert.announce()
        return alert

    def close(self, at: datetime) -> None:
        """Ended now, and its 'closed' notifications, in one transaction; only by the first
        of several processes that close it (two web processes evaluating the stale rule)."""
        with transaction.atomic():
            self.ended_at = at
            closed = Alert.objects.filter(pk=self.pk, ended_at=None).update(
                ended_at=at, peak=self.peak
            )
            if closed:
                self.notify("closed", at)
                self.announce()

    def announce(self) -> None:
        """Wake the web processes' relays, which then send the open alerts to the dashboards
        (alerts/live.py): on PostgreSQL a NOTIFY at commit that names no run (a read of the
        active runs, which the tick's own NOTIFY has mostly sent already)."""
        announce(self._state.db or "default", [])

    def notify(self, event: str, at: datetime) -> None:
        """Queue the event for each of the rule's receivers."""
        payload = self.payload(event)
        targets = [("webhook", self.rule.webhook)] if self.rule.webhook else []
        if self.rule.emails.strip():
            targets.append(("email", self.rule.emails))
        Notification.objects.bulk_create(
            Notification(
                alert=self,
                event=event,
                channel=channel,
                target=target,
                payload=payload,
                next_attempt_at=at,
            )
            for channel, target in targets
        )

    def payload(self, event: str) -> dict[str, Any]:
        """The documented JSON of a notification (README, "Alerts")."""
        rule = self.rule
        return {
            "event": event,
            "alert": {
                "id": self.pk,
                "rule": rule.name,
                "metric": rule.metric,
                "condition": rule.condition,
                "level": rule.level,
                "clear_level": rule.clear_level,
                "baseline": rule.baseline,
                "host": self.host.name,
                "host_id": str(self.host_id),
                "interface": self.interface,
                "started_at": self.started_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
                "value": self.value,
                "peak": self.peak,
            },
        }


class Notification(models.Model):
    """One event of one alert for one receiver, until delivered (retried with backoff)."""

    CHANNELS = [("webhook", "webhook"), ("email", "e-mail")]
    EVENTS = [("opened", "opened"), ("closed", "closed")]

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=6, choices=EVENTS)
    channel = models.CharField(max_length=7, choices=CHANNELS)
    target = models.CharField(max_length=500, help_text="the URL, or the addresses")
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.alert} {self.event} by {self.channel}"
