"""The alerts API's shapes: alerts as /api/alerts and the live banner show them, rules as
/api/alerts/rules reads and writes them (validated by AlertRule.clean, as the admin's form)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from alerts.models import Alert, AlertRule
from metrics.api.serializers import HostQuerySerializer

RECENT_DEFAULT, RECENT_MAX = 20, 200


class AlertSerializer(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule.name", help_text="the rule's name")
    metric = serializers.CharField(source="rule.metric")
    condition = serializers.CharField(source="rule.condition")
    level = serializers.FloatField(source="rule.level")
    clear_level = serializers.FloatField(source="rule.clear_level")
    baseline = serializers.BooleanField(
        source="rule.baseline", help_text="levels are multiples of the interface's baseline"
    )
    host = serializers.CharField(source="host.name")
    host_id = serializers.UUIDField()
    value = serializers.FloatField(help_text="the metric when the alert opened")
    peak = serializers.FloatField(
        help_text="its most extreme value while open (stored at least every 5 s while open)"
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_id",
            "metric",
            "condition",
            "level",
            "clear_level",
            "baseline",
            "host",
            "host_id",
            "interface",
            "started_at",
            "ended_at",
            "value",
            "peak",
        ]


class AlertsSerializer(serializers.Serializer):
    open = AlertSerializer(many=True, help_text="every open alert, the newest first")
    recent = AlertSerializer(many=True, help_text="the last ?limit= closed, the latest ended first")


class AlertsQuerySerializer(HostQuerySerializer):
    """?host=ID|NAME&limit=N: one host's alerts (else every host's), and how many closed."""

    limit = serializers.IntegerField(
        required=False,
        default=RECENT_DEFAULT,
        min_value=0,
        max_value=RECENT_MAX,
        help_text=f"closed alerts to list (default {RECENT_DEFAULT})",
    )


class AlertRuleSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True, allow_null=True)

    class Meta:
        model = AlertRule
        fields = [
            *("id", "name", "enabled", "host", "host_name", "interface"),
            *AlertRule.CONDITION_FIELDS,
            *("webhook", "emails"),
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The model's own rules (AlertRule.clean), each error on its field."""
        rule = AlertRule(**attrs)
        try:
            rule.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs
