"""Billing plans in the admin: each interface's cycle start day and quota."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.utils.html import escape

from metrics.admin import HostFilter
from metrics.models import SamplerRun
from metrics.units import format_bytes
from usage.models import InterfacePlan


class InterfacePlanForm(forms.ModelForm):
    """The interface must be one the host has samples of: a typo would make a plan that never
    applies."""

    class Meta:
        model = InterfacePlan
        fields = ["host", "interface", "cycle_start_day", "quota_bytes", "quota_direction"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        known: dict[str, list[str]] = {}
        for run in SamplerRun.objects.speaking().order_by("host__name", "interface"):
            known.setdefault(run.host.name, []).append(run.interface)
        if known:
            listing = "; ".join(f"{host}: {', '.join(names)}" for host, names in known.items())
            # The admin renders help texts as HTML: the names are the sampler's, escaped.
            self.fields["interface"].help_text = escape(
                f"its name on the host; with samples: {listing}"
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        host, interface = cleaned.get("host"), cleaned.get("interface")
        if host is not None and interface:
            known = SamplerRun.objects.interfaces(host)
            if interface not in known:
                listing = ", ".join(known) if known else "none yet"
                self.add_error(
                    "interface",
                    f"{host.name} has no samples of {interface!r} (its interfaces with "
                    f"samples: {listing})",
                )
        return cleaned


@admin.register(InterfacePlan)
class InterfacePlanAdmin(admin.ModelAdmin):
    form = InterfacePlanForm
    list_display = ("host", "interface", "cycle_start_day", "quota", "quota_direction")
    list_filter = (HostFilter, "quota_direction", "cycle_start_day")
    list_select_related = ("host",)
    search_fields = ("interface", "host__name")

    @admin.display(description="quota", ordering="quota_bytes")
    def quota(self, plan: InterfacePlan) -> str:
        if plan.quota_bytes is None:
            return "—"
        return f"{plan.quota_bytes:,} B ({format_bytes(plan.quota_bytes)})"
