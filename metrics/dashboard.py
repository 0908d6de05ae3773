"""The dashboard page, with the rules its scripts take from the server instead of copying them.

The page carries one JSON object, ``dashboard_rules`` (Django's json_script, element id
``dashboard-rules``): the traffic classes in table order with their labels, which of them are
transports and which applications, the application ports, and after how many of the run's
intervals without a sample the sampler counts as stale (the run's interval itself comes with
``/api/interfaces``, which the page polls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.shortcuts import resolve_url
from django.views.generic import TemplateView

from access.views import ViewerRequiredMixin
from bpf.classes import APP_PROTOCOLS, CLASS_LABELS, CLASSES, DEFAULT_APP_PORTS
from metrics.models import HOST_TOTAL, SamplerRun

# The classes that split every frame by what it carries: TCP, UDP, ICMP, or none of them.
TRANSPORT_CLASSES: tuple[str, ...] = ("tcp", "udp", "icmp", "other")


def app_ports() -> dict[str, list[int]]:
    """The ports of each application class, from settings, class by class as the sampler does
    (a class the setting leaves out keeps its default)."""
    configured: Mapping[str, Sequence[int]] = settings.NETMETRICS_APP_PORTS
    return {app: list(configured.get(app, DEFAULT_APP_PORTS[app])) for app in APP_PROTOCOLS}


def ports_hint(ports: Mapping[str, Sequence[int]]) -> str:
    """Where each application class is recognised: "HTTP: TCP 80, ..., DNS: port 53"."""
    parts = []
    for app, transports in APP_PROTOCOLS.items():
        numbers = " or ".join(str(port) for port in ports[app])
        if len(transports) == 1:
            where = f"{transports[0].upper()} {numbers}"
        else:
            where = f"{'port' if len(ports[app]) == 1 else 'ports'} {numbers}"
        parts.append(f"{CLASS_LABELS[app]}: {where}")
    return ", ".join(parts)


def dashboard_rules() -> dict[str, Any]:
    ports = app_ports()
    return {
        "classes": list(CLASSES),
        "labels": {cls: CLASS_LABELS[cls] for cls in CLASSES},
        "transport": list(TRANSPORT_CLASSES),
        "app": list(APP_PROTOCOLS),
        "app_ports": ports,
        "live_intervals": SamplerRun.LIVE_INTERVALS,
        "host_total": HOST_TOTAL,
        "login_url": resolve_url(settings.LOGIN_URL),  # where a WebSocket's 4401 sends the page
    }


class DashboardView(ViewerRequiredMixin, TemplateView):
    """``/``: the live dashboard (static/netmetrics/*.js do the rest in the browser)."""

    template_name = "dashboard.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        rules = dashboard_rules()
        context["dashboard_rules"] = rules
        context["app_ports_hint"] = ports_hint(rules["app_ports"])
        return context
