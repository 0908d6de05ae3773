"""Alerts and their notifications in the admin: what was announced, to whom, and what failed.

Both are written by the sampler and the web process's worker, so they are read-only here; the
one thing an operator does is "retry now" on notifications not delivered. Failures show in the
notifications' list (state "failed" or "retrying", last error), and in each alert's page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from alerts import outbox
from alerts.delivery import email_unconfigured
from alerts.models import Alert, Notification
from metrics.admin import ReadOnlyAdmin

# The admin's words for the states alerts/outbox.py defines.
STATES = {
    "delivered": Q(delivered_at__isnull=False),
    "pending": Q(delivered_at=None, next_attempt_at__isnull=False),
    "retrying": Q(delivered_at=None, next_attempt_at__isnull=False) & ~Q(last_error=""),
    "failed": Q(delivered_at=None, next_attempt_at=None),
}


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("delivered", "delivered"),
            ("pending", "pending (not yet delivered)"),
            ("retrying", "retrying after a failure"),
            ("failed", "failed: given up"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(STATES[value]) if value in STATES else queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Every field read-only: the change permission allows "retry now" only."""

    list_display = (
        "alert",
        "event",
        "channel",
        "target",
        "attempts",
        "delivered_at",
        "last_error",
        "next_attempt_at",
    )
    list_filter = (StateFilter, "channel", "event")
    list_select_related = ("alert__rule", "alert__host")
    search_fields = ("target", "last_error", "alert__rule__name")
    readonly_fields = (
        "alert",
        "event",
        "channel",
        "target",
        "payload",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    )
    actions = ("retry_now",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if email_unconfigured():
            self.message_user(
                request,
                "No mail server: e-mail notifications fail until NETMETRICS_EMAIL_HOST is set.",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    @admin.action(description="Retry now (the selected ones not delivered)", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = outbox.retry_now(queryset, timezone.now())
        self.message_user(
            request, f"{count} notification(s) will be attempted again now.", messages.SUCCESS
        )


class NotificationInline(admin.TabularInline):
    model = Notification
    fields = ("event", "channel", "target", "attempts", "delivered_at", "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("rule", "host", "interface", "started_at", "ended_at", "value", "peak")
    list_filter = (("ended_at", admin.EmptyFieldListFilter), "rule")
    list_select_related = ("rule", "host")
    inlines = (NotificationInline,)
