"""Query validation and answer shapes of the usage endpoints (/api/stats/usage, /percentile)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import serializers

from metrics.api.serializers import InterfaceQuerySerializer
from metrics.durations import parse_duration
from metrics.tiers import MINUTE
from metrics.units import format_duration
from usage.models import InterfacePlan
from usage.periods import BY

# Periods per answer: beyond 1000 days (the hour tier keeps 730 by default) all would be empty.
MAX_COUNT = 1000
DEFAULT_COUNT = {"day": 31, "month": 12, "cycle": 12}


def _choice(choices: tuple[str, ...] | list[str], **kwargs: Any) -> serializers.ChoiceField:
    listing = ", ".join(choices)
    return serializers.ChoiceField(
        choices=list(choices),
        error_messages={"invalid_choice": f"{{input!r}} is not one of {listing}"},
        **kwargs,
    )


class UsageQuerySerializer(InterfaceQuerySerializer):
    """?host=&iface=&by=day|month|cycle&count=1..1000 (default 31 days, 12 months or cycles)."""

    by = _choice(BY, default="day")
    count = serializers.IntegerField(required=False, min_value=1, max_value=MAX_COUNT)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        attrs.setdefault("count", DEFAULT_COUNT[attrs["by"]])
        return attrs


def _duration(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None


def default_window() -> timedelta:
    """30 days, as transit is billed, unless the minute tier keeps less: then what it keeps, in
    whole hours (a whole number of any bucket)."""
    kept = settings.NETMETRICS_RETENTION[MINUTE.retention]
    return min(timedelta(days=30), kept // timedelta(hours=1) * timedelta(hours=1))


class PercentileQuerySerializer(InterfaceQuerySerializer):
    """?host=&iface=&window=30d&p=95&bucket=5m: a window the minute tier still holds, a whole
    number of buckets; a bucket of whole minutes that divides an hour."""

    window = serializers.CharField(
        required=False,
        max_length=10,
        help_text="a duration (7d, 24h); default 30d, or the minute tier's retention if shorter",
    )
    p = serializers.DecimalField(
        max_digits=7, decimal_places=4, default=Decimal(95), help_text="percentile, above 0 to 100"
    )
    bucket = serializers.CharField(
        default="5m", max_length=10, help_text="whole minutes dividing an hour: 1m .. 60m"
    )

    def validate_window(self, value: str) -> timedelta:
        window = _duration(value)
        kept = settings.NETMETRICS_RETENTION[MINUTE.retention]
        if window > kept:
            raise serializers.ValidationError(
                f"{value!r} is longer than the minute tier's retention "
                f"({format_duration(kept)}, {MINUTE.setting}): the buckets are "
                "built from minute rollups, and older ones are gone"
            )
        return window

    def validate_p(self, value: Decimal) -> Decimal:
        if not 0 < value <= 100:
            raise serializers.ValidationError("must be above 0 and at most 100 (95: the 95th)")
        return value

    def validate_bucket(self, value: str) -> timedelta:
        bucket = _duration(value)
        if bucket % timedelta(minutes=1) or timedelta(hours=1) % bucket:
            raise serializers.ValidationError(
                f"{value!r}: must be whole minutes that divide an hour (1m, 2m, 5m, 10m, 15m, "
                "30m, 60m ...)"
            )
        return bucket

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        attrs.setdefault("window", default_window())
        if attrs["window"] % attrs["bucket"]:
            raise serializers.ValidationError(
                {"window": ["must be a whole number of buckets (a multiple of bucket)"]}
            )
        return attrs


class QuotaSerializer(serializers.Serializer):
    bytes = serializers.IntegerField(help_text="bytes a cycle may carry")
    direction = serializers.ChoiceField(
        choices=[value for value, _ in InterfacePlan.QUOTA_DIRECTIONS],
        help_text="what the quota counts: rx, tx or total",
    )


class PeriodUsageSerializer(serializers.Serializer):
    first_day = serializers.DateField(source="period.first_day", help_text="in time_zone")
    start = serializers.DateTimeField(source="period.start", help_text="its first day's midnight")
    end = serializers.DateTimeField(source="period.end", help_text="exclusive")
    rx_bytes = serializers.IntegerField(source="carried.rx_bytes")
    tx_bytes = serializers.IntegerField(source="carried.tx_bytes")
    total_bytes = serializers.IntegerField(source="carried.total_bytes")
    projected_rx_bytes = serializers.IntegerField(
        source="projected.rx_bytes",
        allow_null=True,
        help_text="the current period's: its bytes so far plus the last 24 hours' scaled to the "
        "time left; null for past periods",
    )
    projected_tx_bytes = serializers.IntegerField(
        source="projected.tx_bytes", allow_null=True, help_text="likewise"
    )
    projected_total_bytes = serializers.IntegerField(
        source="projected.total_bytes", allow_null=True, help_text="likewise"
    )
    quota_used_percent = serializers.FloatField(
        allow_null=True, help_text="a cycle's bytes in the quota's direction over the quota"
    )
    quota_projected_percent = serializers.FloatField(
        allow_null=True, help_text="the current cycle's projected bytes over the quota"
    )


class UsageSerializer(serializers.Serializer):
    iface = serializers.CharField(source="series.interface")
    host = serializers.UUIDField(source="series.host_id", help_text="the id of its host")
    by = serializers.CharField()
    time_zone = serializers.CharField(help_text="NETMETRICS_TIME_ZONE: days start at its midnight")
    cycle_start_day = serializers.IntegerField(help_text="the interface's plan's, else 1")
    quota = QuotaSerializer(allow_null=True, help_text="the interface's plan's; null: none")
    periods = PeriodUsageSerializer(many=True, help_text="oldest first; the last holds now")


class PercentileBpsSerializer(serializers.Serializer):
    rx = serializers.FloatField(allow_null=True)
    tx = serializers.FloatField(allow_null=True)
    total = serializers.FloatField(allow_null=True, help_text="of rx + tx per bucket")


class PercentileSerializer(serializers.Serializer):
    iface = serializers.CharField(source="series.interface")
    host = serializers.UUIDField(source="series.host_id", help_text="the id of its host")
    p = serializers.FloatField()
    bucket_seconds = serializers.IntegerField()
    since = serializers.DateTimeField(help_text="the first bucket's start")
    until = serializers.DateTimeField(help_text="the last bucket's end: now, floored to a bucket")
    buckets = serializers.IntegerField(help_text="buckets with samples: those ranked")
    buckets_in_window = serializers.IntegerField()
    bps = PercentileBpsSerializer(
        help_text="bit/s: the p-th percentile of the bucket averages; null without samples"
    )
