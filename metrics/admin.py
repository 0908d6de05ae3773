"""History in the Django admin: runs, samples, both rollup tiers and each minute's top flows,
read-only, in human units.

The sample and rollup tables hold millions of rows, so every changelist here avoids what the
admin does by default on a big table: the unfiltered COUNT(*) (``show_full_result_count``), a
query per row (related rows, the host's name among them, are joined in with
``list_select_related``), and
filter choices from a DISTINCT over the big table (hosts, interfaces and runs come from the hosts
and runs tables).
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import islice

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponseBadRequest,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.urls import URLPattern, path
from django.utils import timezone

from bpf.classes import ALL_COUNTER_NAMES
from bpf.flows import COUNT_FIELDS
from metrics.models import (
    PEAKS,
    FlowMinute,
    Host,
    HourRollup,
    MinuteRollup,
    Rollup,
    Sample,
    SamplerRun,
)
from metrics.rates import bandwidth_bps, per_second
from metrics.talkers import ENDS, protocol_name
from metrics.units import format_bps, format_bytes, format_duration

# Rows fetched per query while a CSV export streams: memory stays flat on any table size.
CSV_CHUNK_ROWS = 2000


def format_pps(packet_count: int, seconds: float) -> str:
    return f"{per_second(packet_count, seconds):,.0f}"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by the sampler only; the admin is for reading history."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class HostFilter(admin.SimpleListFilter):
    """Hosts from the hosts table, by name."""

    title = "host"
    parameter_name = "host"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in Host.objects.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(host_id=uuid.UUID(value))
        except ValueError:
            raise IncorrectLookupParameters(f"host: {value!r} is not a host id") from None


class InterfaceFilter(admin.SimpleListFilter):
    """Interfaces from the runs table, not a DISTINCT over every sample."""

    title = "interface"
    parameter_name = "interface"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = SamplerRun.objects.order_by("interface").values_list("interface", flat=True)
        return [(name, name) for name in names.distinct()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(interface=self.value()) if self.value() else queryset


class RunFilter(admin.SimpleListFilter):
    """Samples of one sampler run; choices from the runs table (of the chosen interface, if any).

    Only samples have a run: rollup buckets sum the samples of every run that wrote inside them,
    so rollups are filtered by interface only.
    """

    title = "sampler run"
    parameter_name = "run"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        runs = SamplerRun.objects.order_by("-started_at", "-pk")
        interface = request.GET.get(InterfaceFilter.parameter_name)
        if interface:
            runs = runs.filter(interface=interface)
        return [
            (str(pk), f"{name} from {started:%Y-%m-%d %H:%M} ({mode})")
            for pk, name, started, mode in runs.values_list("pk", "interface", "started_at", "mode")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if not value.isdecimal() or int(value) >= 2**63:
            # The changelist's "?e=1" redirect, the export's 400: never a 500.
            raise IncorrectLookupParameters(f"run: {value!r} is not a run id")
        return queryset.filter(run_id=int(value))


class _Echo:
    """A file whose write() hands the line back, so csv.writer can feed a streamed response."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_csv_cell(value) for value in row])


async def _in_chunks_async(lines: Iterator[str]) -> AsyncIterator[str]:
    """Serve a synchronous line generator to ASGI: each chunk of lines is produced in the
    request's sync thread (where its database cursor lives), and sent as one piece.

    Not QuerySet.aiterator(): for values_list() it runs the query in the event loop (Django 5.2).
    """
    next_chunk = sync_to_async(lambda: "".join(islice(lines, CSV_CHUNK_ROWS)))
    while chunk := await next_chunk():
        yield chunk


class CsvExportAdmin(admin.ModelAdmin):
    """CSV export of a changelist: an "Export CSV" link for the whole filtered list, an action
    for the selected rows. One implementation for samples and both rollup tiers.

    The link's view builds the admin's own ChangeList from the same query string, so the export
    holds exactly the rows the list shows (filters, date hierarchy, search, ordering) on every
    page. Rows are streamed from the database in chunks: a 48-hour sample export is ~170,000
    rows per interface and is never held in memory.
    """

    csv_fields: tuple[str, ...] = ()
    change_list_template = "admin/csv_export_change_list.html"
    actions = ("export_selected_csv",)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv_view),
            name=f"{opts.app_label}_{opts.model_name}_export_csv",
        )
        # Before the model admin's own patterns, whose "<path:object_id>/" would match first.
        return [export, *super().get_urls()]

    def export_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The page number is the list's, not the export's: drop it so a stale one cannot fail.
        query = request.GET.copy()
        query.pop(PAGE_VAR, None)
        request.GET = query  # type: ignore[assignment]  # django-stubs: GET is immutable
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            return HttpResponseBadRequest(f"cannot export: {error}", content_type="text/plain")
        return self.csv_response(request, changelist.queryset)

    @admin.action(description="Export selected %(verbose_name_plural)s as CSV")
    def export_selected_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponseBase:
        return self.csv_response(request, queryset)

    def csv_response(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        """Stream queryset's rows: async under ASGI (daphne), where Django would otherwise read
        a synchronous iterator to the end before sending a byte; synchronous under WSGI."""
        rows = queryset.values_list(*self.csv_fields).iterator(chunk_size=CSV_CHUNK_ROWS)
        lines = _csv_lines(self.csv_fields, rows)
        content = _in_chunks_async(lines) if isinstance(request, ASGIRequest) else lines
        filename = f"netmetrics-{self.model._meta.model_name}.csv"
        return StreamingHttpResponse(
            content,
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


@admin.register(Host)
class HostAdmin(ReadOnlyAdmin):
    """The hosts whose samplers write here; each sampler names its own on every start."""

    list_display = ("name", "id", "first_seen", "runs_kept")
    ordering = ("name",)
    search_fields = ("name", "id")

    @admin.display(description="runs kept")
    def runs_kept(self, host: Host) -> int:
        return host.runs.count()


@admin.register(SamplerRun)
class SamplerRunAdmin(ReadOnlyAdmin):
    list_display = (
        "interface",
        "host",
        "mode",
        "egress",
        "started_at",
        "stopped_at",
        "duration",
        "samples_recorded",
        "received",
        "sent",
        "peak",
        "pid",
    )
    list_filter = (HostFilter, InterfaceFilter, "mode", "egress")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)
    # duration asks whether the run is live, which reads its last sample: joined, not per row.
    list_select_related = ("last_sample", "host")

    @admin.display(description="duration")
    def duration(self, run: SamplerRun) -> str:
        """Until it stopped; a live run until now; a killed (stale) one until its last sample."""
        now = timezone.now()
        if run.stopped_at is not None:
            return format_duration(run.stopped_at - run.started_at)
        if run.is_running(now):
            return f"{format_duration(now - run.started_at)}, running"
        end = run.last_sample.timestamp if run.last_sample else run.started_at
        return f"{format_duration(end - run.started_at)}, stale"

    @admin.display(description="samples recorded (measured time ÷ interval)")
    def samples_recorded(self, run: SamplerRun) -> str:
        # Not a COUNT of the run's sample rows: that is slow per row, and samples older than
        # the retention period are deleted, so the count of kept rows would understate the run.
        return f"{round(run.measured_seconds / run.interval):,}"

    @admin.display(description="received")
    def received(self, run: SamplerRun) -> str:
        return format_bytes(run.rx_total_bytes)

    @admin.display(description="sent")
    def sent(self, run: SamplerRun) -> str:
        return format_bytes(run.tx_total_bytes) if run.egress else "not measured"

    @admin.display(description="peak bandwidth")
    def peak(self, run: SamplerRun) -> str:
        return format_bps(run.peak_bandwidth_bps)


@admin.register(Sample)
class SampleAdmin(CsvExportAdmin, ReadOnlyAdmin):
    list_display = (
        "time",
        "host",
        "interface",
        "rx_bandwidth",
        "tx_bandwidth",
        "rx_pps",
        "tx_pps",
        "total_bytes",
        "elapsed",
    )
    list_filter = (HostFilter, InterfaceFilter, RunFilter)
    date_hierarchy = "start"
    ordering = ("-start",)
    # tx columns read run.egress: one join instead of a query per row.
    list_select_related = ("run", "host")
    # COUNT(*) over months of one-second rows is slow and tells the reader little.
    show_full_result_count = False
    csv_fields = (
        "start",
        "timestamp",
        "host",
        "interface",
        "run",
        "elapsed",
        *ALL_COUNTER_NAMES,
    )

    @admin.display(description="time (UTC)", ordering="timestamp")
    def time(self, sample: Sample) -> str:
        return f"{sample.timestamp:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="rx bandwidth")
    def rx_bandwidth(self, sample: Sample) -> str:
        return format_bps(bandwidth_bps(sample.rx_total_bytes, sample.elapsed))

    @admin.display(description="tx bandwidth")
    def tx_bandwidth(self, sample: Sample) -> str:
        if not sample.run.egress:
            return "—"
        return format_bps(bandwidth_bps(sample.tx_total_bytes, sample.elapsed))

    @admin.display(description="rx packets/s")
    def rx_pps(self, sample: Sample) -> str:
        return format_pps(sample.rx_total_packets, sample.elapsed)

    @admin.display(description="tx packets/s")
    def tx_pps(self, sample: Sample) -> str:
        return format_pps(sample.tx_total_packets, sample.elapsed) if sample.run.egress else "—"

    @admin.display(description="bytes (rx + tx)")
    def total_bytes(self, sample: Sample) -> str:
        return format_bytes(sample.total_bytes())


class RollupAdmin(CsvExportAdmin, ReadOnlyAdmin):
    """Minute and hour buckets alike: rates over the seconds measured, not the bucket's length,
    so a bucket the sampler covered only in part is not diluted (as in the API)."""

    list_display = (
        "bucket",
        "host",
        "interface",
        "bandwidth",
        "rx_bandwidth",
        "tx_bandwidth",
        "pps",
        "total_bytes",
        "peak_bandwidth",
        "samples",
        "measured",
    )
    # No run filter: a bucket has no run (see RunFilter).
    list_filter = (HostFilter, InterfaceFilter)
    list_select_related = ("host",)
    date_hierarchy = "start"
    ordering = ("-start",)
    show_full_result_count = False
    csv_fields = (
        "start",
        "host",
        "interface",
        "seconds",
        "samples",
        *ALL_COUNTER_NAMES,
        *(column for column, _direction, _unit in PEAKS),
    )

    @admin.display(description="start (UTC)", ordering="start")
    def bucket(self, rollup: Rollup) -> str:
        return f"{rollup.start:%Y-%m-%d %H:%M}"

    @admin.display(description="bandwidth")
    def bandwidth(self, rollup: Rollup) -> str:
        return format_bps(bandwidth_bps(rollup.total_bytes(), rollup.seconds))

    @admin.display(description="rx bandwidth")
    def rx_bandwidth(self, rollup: Rollup) -> str:
        return format_bps(bandwidth_bps(rollup.rx_total_bytes, rollup.seconds))

    @admin.display(description="tx bandwidth")
    def tx_bandwidth(self, rollup: Rollup) -> str:
        return format_bps(bandwidth_bps(rollup.tx_total_bytes, rollup.seconds))

    @admin.display(description="packets/s")
    def pps(self, rollup: Rollup) -> str:
        return format_pps(rollup.total_packets(), rollup.seconds)

    @admin.display(description="bytes (rx + tx)")
    def total_bytes(self, rollup: Rollup) -> str:
        return format_bytes(rollup.total_bytes())

    @admin.display(description="peak bandwidth (1 s)", ordering="peak_bandwidth_bps")
    def peak_bandwidth(self, rollup: Rollup) -> str:
        return format_bps(rollup.peak_bandwidth_bps)

    @admin.display(description="measured", ordering="seconds")
    def measured(self, rollup: Rollup) -> str:
        return format_duration(timedelta(seconds=rollup.seconds))


admin.site.register(MinuteRollup, RollupAdmin)
admin.site.register(HourRollup, RollupAdmin)


def endpoint(address: str, port: int) -> str:
    """address:port ([address]:port for IPv6); the address alone for a protocol without ports."""
    if not port:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@admin.register(FlowMinute)
class FlowMinuteAdmin(CsvExportAdmin, ReadOnlyAdmin):
    """Each minute's top flows as the sampler stored them (/api/flows/top sums them per flow)."""

    list_display = (
        "minute",
        "host",
        "interface",
        "protocol_name",
        "local_end",
        "remote_end",
        "received",
        "sent",
        "rx_packets",
        "tx_packets",
    )
    list_filter = (HostFilter, InterfaceFilter)
    list_select_related = ("host",)
    date_hierarchy = "start"
    ordering = ("-start", "-rx_bytes")
    show_full_result_count = False
    csv_fields = ("start", "host", "interface", *ENDS, *COUNT_FIELDS)

    @admin.display(description="minute (UTC)", ordering="start")
    def minute(self, flow: FlowMinute) -> str:
        return f"{flow.start:%Y-%m-%d %H:%M}"

    @admin.display(description="protocol", ordering="protocol")
    def protocol_name(self, flow: FlowMinute) -> str:
        return protocol_name(flow.protocol)

    @admin.display(description="local", ordering="local")
    def local_end(self, flow: FlowMinute) -> str:
        return endpoint(flow.local, flow.local_port)

    @admin.display(description="remote", ordering="remote")
    def remote_end(self, flow: FlowMinute) -> str:
        return endpoint(flow.remote, flow.remote_port)

    @admin.display(description="received", ordering="rx_bytes")
    def received(self, flow: FlowMinute) -> str:
        return format_bytes(flow.rx_bytes)

    @admin.display(description="sent", ordering="tx_bytes")
    def sent(self, flow: FlowMinute) -> str:
        return format_bytes(flow.tx_bytes)
