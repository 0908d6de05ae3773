"""Alert rules, edited here (AlertRule.clean refuses a bad definition as form errors), and the
alerts they opened, read-only: the sampler opens and closes them."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from alerts.models import Alert, AlertRule


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "host", "interface", *AlertRule.CONDITION_FIELDS)
    list_filter = ("enabled", "metric", "host")
    search_fields = ("name", "interface")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "enabled", "host", "interface")}),
        ("Condition", {"fields": AlertRule.CONDITION_FIELDS}),
        ("Receivers", {"fields": ("webhook", "emails")}),
    )


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("rule", "host", "interface", "started_at", "ended_at", "value", "peak")
    list_filter = ("rule", "host")
    list_select_related = ("rule", "host")
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False
