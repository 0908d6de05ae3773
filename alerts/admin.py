"""Alert rules, edited here (AlertRule.clean refuses a bad definition as form errors); the
alerts they opened and their notifications, read-only, in admin_notifications."""

from __future__ import annotations

from django.contrib import admin
from django.db import models

from alerts import admin_notifications  # noqa: F401 (alerts and their notifications)
from alerts.models import AlertRule


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
