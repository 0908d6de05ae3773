"""Keeping the disk bounded: rows older than their tier's retention go, a batch at a time."""

from __future__ import annotations

from datetime import datetime

from metrics.models import Series
from metrics.tiers import RETAINED


def prune(series: Series, now: datetime, batch: int = 1000) -> int:
    """Delete at most `batch` expired rows of each tier of one series; return how many.

    Small batches keep each delete short, so the sampler can prune between ticks without
    holding the database's write lock for long; a backlog clears over the next calls.
    """
    deleted = 0
    for table in RETAINED:
        rows = table.model._default_manager
        expired = rows.filter(**series.filter(), start__lt=table.kept_since(now))
        ids = list(expired.order_by("start").values_list("pk", flat=True)[:batch])
        if ids:
            deleted += rows.filter(pk__in=ids).delete()[0]
    return deleted
