"""Samples of interface traffic and the sampler runs that wrote them.

Each row carries one counter column per direction x class x unit (``rx_tcp_bytes`` ...), named
after bpf.classes so the kernel's counters map onto columns one to one. A Sample holds the
counts of one interval; a SamplerRun holds the cumulative counts at its last sample, so that
realtime totals are one row read, never a sum over the run's history.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import datetime

from django.db import models, transaction
from django.db.models import F, Max

from bpf.classes import COUNTER_NAMES


class CounterColumns(models.Model):
    class Meta:
        abstract = True

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_NAMES}

    def total_bytes(self) -> int:
        return self.rx_total_bytes + self.tx_total_bytes

    def total_packets(self) -> int:
        return self.rx_total_packets + self.tx_total_packets


for _name in COUNTER_NAMES:
    CounterColumns.add_to_class(_name, models.BigIntegerField(default=0))


def this_host() -> str:
    return socket.gethostname()


class SamplerRunQuerySet(models.QuerySet):
    def latest_for(self, interface: str | None) -> SamplerRun | None:
        """The run that wrote the newest sample (of interface, when given)."""
        runs = self.filter(last_sample__isnull=False).select_related("last_sample")
        if interface is not None:
            runs = runs.filter(interface=interface)
        return runs.order_by("-last_sample__timestamp", "-pk").first()


class SamplerRun(CounterColumns):
    """One life of `runsampler` on one interface; counters are cumulative since it started."""

    MODES = [("native", "native XDP"), ("skb", "socket-buffer path: TC ingress classifier")]

    interface = models.CharField(max_length=15, db_index=True)
    hostname = models.CharField(max_length=255, default=this_host)
    mode = models.CharField(max_length=8, choices=MODES)
    egress = models.BooleanField(help_text="whether outgoing traffic is measured (TC egress)")
    interval = models.FloatField(default=1.0, help_text="seconds between samples")
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_sample = models.ForeignKey(
        "Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    measured_seconds = models.FloatField(default=0.0, help_text="sum of the samples' intervals")
    peak_bandwidth_bps = models.FloatField(default=0.0)

    objects = SamplerRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.interface} on {self.hostname} from {self.started_at:%Y-%m-%d %H:%M:%S}"

    def is_running(self, now: datetime) -> bool:
        """A run is live while it has a sample newer than three intervals."""
        if self.stopped_at is not None or self.last_sample is None:
            return False
        return (now - self.last_sample.timestamp).total_seconds() < 3 * self.interval

    def record(self, counters: Mapping[str, int], timestamp: datetime, elapsed: float) -> Sample:
        """Store the interval since the last recorded sample, from the kernel's cumulative counters.

        The delta is taken against this run's own cumulative columns, which change only when the
        write commits: after a failed write (database locked, disk full) the next call covers the
        whole gap, so no count is lost or counted twice.
        """
        delta = {name: counters[name] - getattr(self, name) for name in COUNTER_NAMES}
        bandwidth = (delta["rx_total_bytes"] + delta["tx_total_bytes"]) * 8 / elapsed
        with transaction.atomic():
            sample = Sample.objects.create(
                run=self, interface=self.interface, timestamp=timestamp, elapsed=elapsed, **delta
            )
            changes = {
                **{name: counters[name] for name in COUNTER_NAMES},
                "last_sample": sample,
                "measured_seconds": self.measured_seconds + elapsed,
                "peak_bandwidth_bps": max(self.peak_bandwidth_bps, bandwidth),
            }
            SamplerRun.objects.filter(pk=self.pk).update(**changes)
        for name, value in changes.items():
            setattr(self, name, value)
        return sample

    def stop(self, stopped_at: datetime) -> None:
        self.stopped_at = stopped_at
        self.save(update_fields=["stopped_at"])


class SampleQuerySet(models.QuerySet):
    def peak_bandwidth_bps(self) -> float:
        bits = (F("rx_total_bytes") + F("tx_total_bytes")) * 8.0 / F("elapsed")
        return self.aggregate(peak=Max(bits))["peak"] or 0.0


class Sample(CounterColumns):
    """The traffic of one interval (normally one second) on one interface.

    ``timestamp`` is when the interval ended; ``elapsed`` its real length in seconds, so rates
    stay right when a tick is late.
    """

    run = models.ForeignKey(SamplerRun, on_delete=models.CASCADE, related_name="samples")
    interface = models.CharField(max_length=15)
    timestamp = models.DateTimeField()
    elapsed = models.FloatField()

    objects = SampleQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        indexes = [models.Index(fields=["interface", "timestamp"])]
        get_latest_by = "timestamp"

    def __str__(self) -> str:
        return f"{self.interface} at {self.timestamp:%Y-%m-%d %H:%M:%S}"

    def rate(self, name: str) -> float:
        """Per-second rate of one counter over this sample's interval."""
        return getattr(self, name) / self.elapsed
