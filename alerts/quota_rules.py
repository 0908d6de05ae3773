"""The default quota rules: when an interface's plan gets a quota (a new plan with one, or a
plan without one given one), rules at 75, 90 and 100 % of it are made for that interface.

They are made once, at that moment, and are ordinary rules afterwards: edit them (levels,
receivers) or delete them in the admin, and saving the plan again leaves them as they are. Only
a quota removed and set again makes the missing ones again (by name: an edited one is kept).
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from alerts.models import AlertRule
from usage.models import InterfacePlan

DEFAULT_PERCENTS = (75, 90, 100)


def default_rule_name(plan: InterfacePlan, percent: int) -> str:
    return f"{plan.host.name[:60]} {plan.interface}: quota {percent}%"


@receiver(pre_save, sender=InterfacePlan)
def _had_quota(sender: type[InterfacePlan], instance: InterfacePlan, **kwargs: Any) -> None:
    instance._had_quota = (  # type: ignore[attr-defined]
        instance.pk is not None
        and InterfacePlan.objects.filter(pk=instance.pk, quota_bytes__isnull=False).exists()
    )


@receiver(post_save, sender=InterfacePlan)
def _default_rules(sender: type[InterfacePlan], instance: InterfacePlan, **kwargs: Any) -> None:
    if instance.quota_bytes is None or getattr(instance, "_had_quota", False):
        return
    for percent in DEFAULT_PERCENTS:
        AlertRule.objects.get_or_create(
            name=default_rule_name(instance, percent),
            defaults={
                "host": instance.host,
                "interface": instance.interface,
                "metric": AlertRule.QUOTA,
                "level": percent,
                # Within a cycle the use only grows: the alert closes when the next cycle starts.
                "clear_level": percent,
            },
        )
