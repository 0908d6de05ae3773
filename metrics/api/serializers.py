"""The shapes of the API's answers and the validation of its query parameters."""

from __future__ import annotations

import re
from datetime import timedelta

from rest_framework import serializers

from bpf.classes import CLASSES
from metrics.models import SamplerRun

_PREFIXES = ["" if cls == "total" else f"{cls}_" for cls in CLASSES]


def _fields(kind: type[serializers.Field], *suffixes: str) -> dict[str, serializers.Field]:
    return {f"{prefix}{suffix}": kind() for prefix in _PREFIXES for suffix in suffixes}


# Per-class keys are generated from bpf.classes so that a new class needs no change here.
RatesSerializer = type(
    "RatesSerializer",
    (serializers.Serializer,),
    _fields(serializers.FloatField, "bandwidth_bps", "packets_per_sec"),
)
DirectionTotalsSerializer = type(
    "DirectionTotalsSerializer",
    (serializers.Serializer,),
    _fields(serializers.IntegerField, "packets", "bytes"),
)


class TotalsSerializer(serializers.Serializer):
    rx = DirectionTotalsSerializer()
    tx = DirectionTotalsSerializer(allow_null=True)


class RealtimeSerializer(serializers.Serializer):
    """The original sampler's fields (both directions) plus per-direction detail."""

    interface = serializers.CharField()
    timestamp = serializers.DateTimeField()
    sampler_running = serializers.BooleanField()
    bandwidth_bps = serializers.FloatField(source="both.bandwidth_bps")
    packets_per_sec = serializers.FloatField(source="both.packets_per_sec")
    tcp_bandwidth_bps = serializers.FloatField(source="both.tcp_bandwidth_bps")
    tcp_packets_per_sec = serializers.FloatField(source="both.tcp_packets_per_sec")
    http_bandwidth_bps = serializers.FloatField(source="both.http_bandwidth_bps")
    http_packets_per_sec = serializers.FloatField(source="both.http_packets_per_sec")
    https_bandwidth_bps = serializers.FloatField(source="both.https_bandwidth_bps")
    https_packets_per_sec = serializers.FloatField(source="both.https_packets_per_sec")
    total_packets = serializers.IntegerField()
    total_bytes = serializers.IntegerField()
    rx = RatesSerializer()
    tx = RatesSerializer(allow_null=True)
    totals = TotalsSerializer()


class SummarySerializer(serializers.Serializer):
    interface = serializers.CharField()
    window = serializers.CharField()
    uptime_seconds = serializers.FloatField()
    avg_bandwidth_bps = serializers.FloatField()
    peak_bandwidth_bps = serializers.FloatField()
    total_packets = serializers.IntegerField()
    total_bytes = serializers.IntegerField()
    tcp_percentage = serializers.FloatField()
    http_percentage = serializers.FloatField()
    https_percentage = serializers.FloatField()


def known_interfaces() -> list[str]:
    return sorted(
        SamplerRun.objects.filter(last_sample__isnull=False)
        .values_list("interface", flat=True)
        .distinct()
    )


class InterfaceQuerySerializer(serializers.Serializer):
    """?iface=NAME: an interface that has samples; absent means the newest-sampled one."""

    iface = serializers.CharField(required=False, max_length=15)

    def validate_iface(self, value: str) -> str:
        known = known_interfaces()
        if value not in known:
            listing = ", ".join(known) if known else "none yet"
            raise serializers.ValidationError(
                f"unknown interface {value!r}: no samples for it "
                f"(interfaces with samples: {listing})"
            )
        return value


_WINDOW = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=3660)


def parse_window(value: str) -> timedelta | None:
    """5m, 1h, 24h, 7d, 30d ... as a timedelta; 'all' as None. ValueError says what is wrong."""
    if value == "all":
        return None
    match = _WINDOW.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a window: use a number and a unit (s, m, h, d), "
            "e.g. 5m, 24h, 7d, or 'all'"
        )
    span = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if not timedelta(0) < span <= MAX_WINDOW:
        raise ValueError(f"{value!r}: a window must be longer than 0 and at most 3660d")
    return span


class SummaryQuerySerializer(InterfaceQuerySerializer):
    """?window=5m|1h|24h|7d|30d|all; absent: the current sampler run."""

    window = serializers.CharField(required=False, max_length=10)

    def validate_window(self, value: str) -> str:
        try:
            parse_window(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value
