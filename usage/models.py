"""Each interface's billing plan: the day its cycle starts and its quota, set in the admin."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from metrics.models import Host
from usage.totals import Quota


class InterfacePlan(models.Model):
    """One interface of one host as its provider bills it. Without a plan an interface's cycle
    is the calendar month and it has no quota."""

    RX, TX, TOTAL = "rx", "tx", "total"
    QUOTA_DIRECTIONS = [(RX, "received"), (TX, "sent"), (TOTAL, "received and sent")]

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="plans")
    interface = models.CharField(max_length=15, help_text="its name on the host, e.g. eth0")
    cycle_start_day = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="the day of the month (1-28) each billing cycle starts, at midnight in "
        "NETMETRICS_TIME_ZONE",
    )
    quota_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="bytes a cycle may carry (1 TB: 1000000000000); empty: no quota",
    )
    quota_direction = models.CharField(
        max_length=5,
        choices=QUOTA_DIRECTIONS,
        default=TOTAL,
        help_text="which traffic the quota counts",
    )

    class Meta:
        ordering = ["host__name", "interface"]
        constraints = [
            models.UniqueConstraint(fields=["host", "interface"], name="one_plan_per_interface"),
            models.CheckConstraint(
                condition=models.Q(cycle_start_day__gte=1, cycle_start_day__lte=28),
                name="cycle_start_day_1_to_28",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host.name} {self.interface}"

    @property
    def quota(self) -> Quota | None:
        return Quota(self.quota_bytes, self.quota_direction) if self.quota_bytes else None
