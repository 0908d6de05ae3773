"""Keeping the disk bounded: rows older than their tier's retention go, a batch at a time."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from metrics.models import FlowMinute, HourRollup, MinuteRollup, Sample

TIERS = (
    ("samples", Sample),
    ("minutes", MinuteRollup),
    ("hours", HourRollup),
    ("flows", FlowMinute),
)


def prune(interface: str, now: datetime, batch: int = 1000) -> int:
    """Delete at most `batch` expired rows of each tier for one interface; return how many.

    Small batches keep each delete short, so the sampler can prune between ticks without
    holding the database's write lock for long; a backlog clears over the next calls.
    """
    deleted = 0
    for tier, model in TIERS:
        cutoff = now - settings.NETMETRICS_RETENTION[tier]
        expired = model.objects.filter(interface=interface, start__lt=cutoff).order_by("start")
        ids = list(expired.values_list("pk", flat=True)[:batch])
        if ids:
            deleted += model.objects.filter(pk__in=ids).delete()[0]
    return deleted
