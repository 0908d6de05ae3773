"""`manage.py rebuildrollups`: recompute the minute and hour rollups from the raw samples."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Min

from metrics.models import Rollup, Sample, SamplerRun, Series
from metrics.tiers import ROLLUPS


def rebuild(series: Series, tier: type[Rollup]) -> int:
    """Recompute tier's buckets that the raw samples cover whole; return how many were written.

    A bucket that began before the oldest raw sample kept is left alone: its earlier samples
    are gone, so the rollup row is the only record of them.
    """
    oldest = Sample.objects.filter(**series.filter()).aggregate(first=Min("start"))["first"]
    if oldest is None:
        return 0
    first = tier.bucket_start(oldest)
    if first < oldest:
        first += tier.STEP
    buckets: dict = {}
    with transaction.atomic():
        tier.objects.filter(**series.filter(), start__gte=first).delete()
        samples = Sample.objects.filter(**series.filter(), start__gte=first).order_by("start")
        for sample in samples.iterator(chunk_size=2000):
            start = tier.bucket_start(sample.start)
            bucket = buckets.setdefault(start, tier(**series.filter(), start=start))
            bucket.add(sample)
        tier.objects.bulk_create(buckets.values(), batch_size=500)
    return len(buckets)


class Command(BaseCommand):
    help = (
        "Recompute minute and hour rollups from the raw samples still kept. Safe while the "
        "sampler runs: its writes wait for the rebuild (and are retried if they time out)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--iface", help="only this interface, of every host (default: all)")

    def handle(self, *args: Any, iface: str | None, **options: Any) -> None:
        # Every series that has samples has a run (a sample's run is its foreign key).
        runs = SamplerRun.objects.order_by("host__name", "interface")
        if iface:
            runs = runs.filter(interface=iface)
        pairs = runs.values_list("host_id", "host__name", "interface").distinct()
        for host, name, interface in pairs:
            for tier in ROLLUPS:
                model = tier.rollup_model
                count = rebuild(Series(host, interface), model)
                self.stdout.write(
                    f"{name} {interface}: {count} {model._meta.verbose_name} rows rebuilt"
                )
