"""History in the Django admin: runs and samples, read-only, in human units."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from metrics.models import Sample, SamplerRun
from metrics.units import format_bps, format_bytes


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by the sampler only; the admin is for reading history."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class InterfaceFilter(admin.SimpleListFilter):
    """Interfaces from the runs table, not a DISTINCT over every sample."""

    title = "interface"
    parameter_name = "interface"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = SamplerRun.objects.order_by("interface").values_list("interface", flat=True)
        return [(name, name) for name in names.distinct()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(interface=self.value()) if self.value() else queryset


@admin.register(SamplerRun)
class SamplerRunAdmin(ReadOnlyAdmin):
    list_display = (
        "interface",
        "hostname",
        "mode",
        "egress",
        "started_at",
        "stopped_at",
        "received",
        "sent",
        "peak",
        "pid",
    )
    list_filter = (InterfaceFilter, "mode", "egress")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)

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
class SampleAdmin(ReadOnlyAdmin):
    list_display = (
        "time",
        "interface",
        "rx_bandwidth",
        "tx_bandwidth",
        "rx_pps",
        "tx_pps",
        "elapsed",
    )
    list_filter = (InterfaceFilter,)
    date_hierarchy = "start"
    ordering = ("-start",)
    list_select_related = ("run",)
    # COUNT(*) over months of one-second rows is slow and tells the reader little.
    show_full_result_count = False

    @admin.display(description="time (UTC)", ordering="timestamp")
    def time(self, sample: Sample) -> str:
        return f"{sample.timestamp:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="rx bandwidth")
    def rx_bandwidth(self, sample: Sample) -> str:
        return format_bps(sample.rate("rx_total_bytes") * 8)

    @admin.display(description="tx bandwidth")
    def tx_bandwidth(self, sample: Sample) -> str:
        return format_bps(sample.rate("tx_total_bytes") * 8) if sample.run.egress else "—"

    @admin.display(description="rx packets/s")
    def rx_pps(self, sample: Sample) -> str:
        return f"{sample.rate('rx_total_packets'):,.0f}"

    @admin.display(description="tx packets/s")
    def tx_pps(self, sample: Sample) -> str:
        return f"{sample.rate('tx_total_packets'):,.0f}" if sample.run.egress else "—"
