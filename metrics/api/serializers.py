"""The shapes of the API's answers and the validation of its query parameters."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from metrics.durations import parse_duration
from metrics.history import (
    DEFAULT_FIELDS,
    DIRECTIONS,
    FIELDS,
    MAX_POINTS,
    auto_step,
    default_range,
    point_count,
)
from metrics.hostnames import known_name
from metrics.models import Host, LiveFlows, SamplerRun
from metrics.snapshot import FIELD_PREFIXES
from metrics.talkers import ORDERS, protocol_name
from metrics.tiers import BY_NAME


def _fields(kind: type[serializers.Field], *suffixes: str) -> dict[str, serializers.Field]:
    return {
        f"{prefix}{suffix}": kind() for prefix in FIELD_PREFIXES.values() for suffix in suffixes
    }


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
    tcp_retransmits = serializers.IntegerField()


def _rtt_field(q: int, over: str) -> serializers.FloatField:
    return serializers.FloatField(
        allow_null=True,
        help_text=f"p{q} of the smoothed RTT of the interface's TCP connections {over}, in "
        "microseconds, to a factor of two (the upper edge of its log2 bucket), one count per "
        "connection active in a sample; null without one",
    )


class RealtimeSerializer(serializers.Serializer):
    """The original sampler's fields (both directions) plus per-direction detail."""

    interface = serializers.CharField()
    host = serializers.UUIDField(source="run.host_id", help_text="the id of the sampled host")
    host_name = serializers.CharField(source="run.host.name")
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
    tcp_retransmits = serializers.FloatField(
        help_text="TCP segments retransmitted per second over the latest interval"
    )
    rtt_p50_us = _rtt_field(50, "over the latest interval")
    rtt_p99_us = _rtt_field(99, "over the latest interval")
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
    tcp_retransmits = serializers.IntegerField(help_text="TCP segments retransmitted")
    rtt_p50_us = _rtt_field(50, "over the run or window")
    rtt_p99_us = _rtt_field(99, "over the run or window")


class HostQuerySerializer(serializers.Serializer):
    """?host=ID|NAME: a host by its id, or by its name when no other host has it."""

    host = serializers.CharField(
        required=False, max_length=255, help_text="a host's id, or its name if no other has it"
    )

    def to_internal_value(self, data: Any) -> dict:
        """A parameter given blank (``?iface=``) is a 400, as the schema's minLength says.

        DRF treats a blank optional field of a QueryDict as absent, so ``?iface=`` silently
        meant "the newest interface" over HTTP while the WebSocket (a plain dict) rejected it.
        """
        if isinstance(data, QueryDict):
            blank = [name for name, _ in self.fields.items() if name in data and data[name] == ""]
            if blank:
                raise serializers.ValidationError(
                    {name: ["may not be blank: give a value or leave it out"] for name in blank}
                )
        return super().to_internal_value(data)

    def validate_host(self, value: str) -> Host:
        try:
            return Host.objects.get(pk=uuid.UUID(value))
        except (ValueError, Host.DoesNotExist):
            pass
        named = list(Host.objects.filter(name=value)[:2])
        if len(named) == 1:
            return named[0]
        if named:
            raise serializers.ValidationError(
                f"several hosts are named {value!r}: give its id (GET /api/hosts lists them)"
            )
        raise serializers.ValidationError(
            f"unknown host {value!r}: no host has this id or name (GET /api/hosts lists them)"
        )


class InterfaceQuerySerializer(HostQuerySerializer):
    """?host=ID|NAME&iface=NAME: a host and one of its interfaces that has samples. Without
    host, the interface's newest-sampled host; without iface, the host's (or every host's)
    newest-sampled interface."""

    iface = serializers.CharField(required=False, max_length=15)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        iface, host = attrs.get("iface"), attrs.get("host")
        if iface is not None:
            known = SamplerRun.objects.interfaces(host)
            if iface not in known:
                listing = ", ".join(known) if known else "none yet"
                where = f" on {host.name}" if host else ""
                raise serializers.ValidationError(
                    {
                        "iface": [
                            f"unknown interface {iface!r}{where}: no samples for it "
                            f"(interfaces with samples{where}: {listing})"
                        ]
                    }
                )
        return attrs


class RangeQuerySerializer(InterfaceQuerySerializer):
    """?since=&until= (ISO 8601; UTC when no offset is given)."""

    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["must be later than since"]})
        return attrs


def duration_or_all(value: str) -> None:
    """A window: a duration (a number and s, m, h or d: 5m, 24h, 7d) up to now, or 'all'."""
    if value != "all":
        try:
            parse_duration(value)
        except ValueError as exc:
            raise serializers.ValidationError(f"{exc}, or 'all'") from None


class SummaryQuerySerializer(RangeQuerySerializer):
    """?window=5m|1h|24h|7d|30d|all, or ?since=[&until=]; neither: the current sampler run."""

    window = serializers.CharField(required=False, max_length=10, validators=[duration_or_all])

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "window" in attrs and ("since" in attrs or "until" in attrs):
            raise serializers.ValidationError({"window": ["give either window or since/until"]})
        if "until" in attrs and "since" not in attrs:
            raise serializers.ValidationError({"since": ["required when until is given"]})
        return attrs


class HistoryQuerySerializer(RangeQuerySerializer):
    """?since=&until=&step=1s|1m|1h|auto&direction=rx|tx|both&fields=a,b|all (default: last hour,
    the DEFAULT_FIELDS; every field of every class is 30 series, megabytes for an hour of
    seconds, so a client asks for the ones it draws).

    The view gives the request's time as ``context["now"]``: the default range and step=auto
    are resolved against it, so that the 400 for too many points is about the real range.
    """

    step = serializers.ChoiceField(choices=[*BY_NAME, "auto"], default="auto")
    direction = serializers.ChoiceField(choices=list(DIRECTIONS), default="both")
    # The metaclass moves declared fields out of the class: Serializer.fields stays the property.
    fields = serializers.CharField(required=False, max_length=2000)  # type: ignore[assignment]

    def validate_fields(self, value: str) -> list[str]:
        if value == "all":
            return list(FIELDS)
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in FIELDS]
        if unknown or not names:
            raise serializers.ValidationError(
                f"unknown field(s) {', '.join(unknown) or '(none given)'}; "
                f"fields are: {', '.join(FIELDS)}, or all"
            )
        return names

    def validate(self, attrs: dict) -> dict:
        now = self.context["now"]
        attrs["since"], attrs["until"] = default_range(attrs.get("since"), attrs.get("until"), now)
        attrs = super().validate(attrs)
        if attrs["step"] == "auto":
            attrs["step"] = auto_step(attrs["since"], attrs["until"], now)
        points = point_count(attrs["since"], attrs["until"], attrs["step"])
        if points > MAX_POINTS:
            raise serializers.ValidationError(
                {
                    "step": [
                        f"{points} points at step={attrs['step']} over this range; at most "
                        f"{MAX_POINTS}: use a coarser step, a shorter range or step=auto"
                    ]
                }
            )
        attrs.setdefault("fields", list(DEFAULT_FIELDS))
        return attrs


class HistorySerializer(serializers.Serializer):
    interface = serializers.CharField()
    direction = serializers.CharField()
    step = serializers.CharField()
    timestamps = serializers.ListField(
        child=serializers.IntegerField(), help_text="unix seconds of each step's start"
    )
    series = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True))
    )


class RunSerializer(serializers.ModelSerializer):
    class Meta:
        model = SamplerRun
        fields = ["hostname", "mode", "egress", "interval", "pid", "started_at", "stopped_at"]

    hostname = serializers.CharField(source="host.name")


class InterfaceSerializer(serializers.Serializer):
    interface = serializers.CharField()
    host = serializers.UUIDField(source="run.host_id", help_text="the id of its host")
    hostname = serializers.CharField(source="run.host.name", help_text="its host's name")
    status = serializers.ChoiceField(choices=["running", "stale", "stopped"])
    first_sample = serializers.DateTimeField(allow_null=True)
    last_sample = serializers.DateTimeField(allow_null=True)
    total = serializers.BooleanField(help_text="whether this is the host total (iface=all)")
    members = serializers.ListField(
        child=serializers.CharField(),
        help_text="the host total's: the interfaces its latest sample sums (bridge and bond "
        "ports left out when their master is counted); empty for an interface",
    )
    bandwidth_bps = serializers.FloatField(
        allow_null=True, help_text="both directions over the latest sample; null unless running"
    )
    packets_per_sec = serializers.FloatField(
        allow_null=True, help_text="both directions over the latest sample; null unless running"
    )
    run = RunSerializer()


class HostSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="host.pk")
    name = serializers.CharField(source="host.name")
    status = serializers.ChoiceField(
        choices=["running", "stale", "stopped", "idle", "catching up"],
        help_text="catching up: writing what its sampler spooled while this database did not "
        "answer; else its newest-sampled run's (as /api/interfaces); idle: no samples yet",
    )
    backlog = serializers.IntegerField(
        source="host.backlog", help_text="spooled ticks it has yet to write (catching up)"
    )
    interfaces = serializers.ListField(
        child=serializers.CharField(), help_text="those with samples, the host total first"
    )
    last_sample = serializers.DateTimeField(allow_null=True)
    rx_bps = serializers.FloatField(
        allow_null=True, help_text="received over its newest sample (the host total's if any)"
    )
    tx_bps = serializers.FloatField(allow_null=True, help_text="sent, likewise")
    first_seen = serializers.DateTimeField(source="host.first_seen")


class FlowsTopQuerySerializer(InterfaceQuerySerializer):
    """?window=1h (a duration or all)&by=bytes|packets&limit=1..100."""

    window = serializers.CharField(
        default="1h",
        max_length=10,
        validators=[duration_or_all],
        help_text="a number and s, m, h or d (5m, 24h, 7d), or all",
    )
    by = serializers.ChoiceField(choices=list(ORDERS), default="bytes")
    limit = serializers.IntegerField(default=20, min_value=1, max_value=100)


@extend_schema_field(OpenApiTypes.STR)
class ProtocolNameField(serializers.ReadOnlyField):
    def to_representation(self, value: int) -> str:
        return protocol_name(value)


@extend_schema_field(OpenApiTypes.STR)
class HostNameField(serializers.ReadOnlyField):
    def to_representation(self, value: str) -> str | None:
        return known_name(value)


def _name_field(end: str) -> HostNameField:
    return HostNameField(
        source=end,
        allow_null=True,
        help_text=f"the {end} address's name in the hosts file, else null (never asked of DNS)",
    )


class FlowSerializer(serializers.Serializer):
    """One flow as the monitored host sees it (local is its side), and its traffic."""

    protocol = ProtocolNameField(help_text="tcp, udp, icmp, icmpv6, else the IP protocol number")
    protocol_number = serializers.IntegerField(source="protocol")
    local = serializers.IPAddressField()
    local_port = serializers.IntegerField(help_text="0 for protocols without ports")
    local_name = _name_field("local")
    remote = serializers.IPAddressField()
    remote_port = serializers.IntegerField(help_text="0 for protocols without ports")
    remote_name = _name_field("remote")
    rx_packets = serializers.IntegerField()
    rx_bytes = serializers.IntegerField()
    tx_packets = serializers.IntegerField()
    tx_bytes = serializers.IntegerField()


class TopFlowSerializer(FlowSerializer):
    packets = serializers.IntegerField(help_text="rx_packets + tx_packets")
    bytes = serializers.IntegerField(help_text="rx_bytes + tx_bytes")


class TopFlowsSerializer(serializers.Serializer):
    interface = serializers.CharField()
    window = serializers.CharField()
    since = serializers.DateTimeField(help_text="the first minute counted (the window's, floored)")
    until = serializers.DateTimeField()
    by = serializers.ChoiceField(choices=list(ORDERS))
    limit = serializers.IntegerField()
    flow_table = serializers.IntegerField(
        help_text="entries of the kernel's flow table in the interface's latest run; 0: flows off"
    )
    flows_dropped = serializers.IntegerField(
        help_text="flows evicted from the kernel's table before they were read, in the window: "
        "their traffic is missing from the flows (never from the interface's counters)"
    )
    flows = TopFlowSerializer(many=True)


def _rates_field(unit: str) -> serializers.ListField:
    windows = ", ".join(map(str, LiveFlows.WINDOWS))
    return serializers.ListField(
        child=serializers.FloatField(), help_text=f"{unit} over the last {windows} seconds"
    )


class LiveFlowSerializer(FlowSerializer):
    """Counts are over the table's whole window (``seconds``)."""

    rx_bps = _rates_field("bits per second received")
    tx_bps = _rates_field("bits per second sent")
    rx_pps = _rates_field("packets per second received")
    tx_pps = _rates_field("packets per second sent")


class LiveFlowsSerializer(serializers.Serializer):
    """A run's top flows now: /api/flows/live, and the "flows" of each live sample message."""

    interface = serializers.CharField()
    timestamp = serializers.DateTimeField(
        allow_null=True, help_text="end of the newest interval counted; null: no flows yet or off"
    )
    seconds = serializers.FloatField(help_text="the time the counts cover")
    windows = serializers.ListField(
        child=serializers.IntegerField(), help_text="the seconds of each rate's averages"
    )
    flow_table = serializers.IntegerField(help_text="entries of the kernel's flow table; 0: off")
    dropped = serializers.IntegerField(
        help_text="flows evicted from the kernel's table unread within the window"
    )
    flows = LiveFlowSerializer(many=True)
