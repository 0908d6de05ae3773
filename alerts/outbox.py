"""The outbox's states and moves: which notifications are due, claiming one for a delivery
attempt so that exactly one process makes it, and recording how the attempt went.

A notification is
- pending: next_attempt_at is set and delivered_at is not (due once next_attempt_at is past);
- in flight: claimed, its next_attempt_at moved LEASE ahead, so that no one else sees it due;
- delivered: delivered_at is set (next_attempt_at cleared);
- failed: given up after MAX_ATTEMPTS, next_attempt_at cleared, last_error says why.

Claiming is one conditional UPDATE (on the id and the next_attempt_at that was read), the same
on SQLite and PostgreSQL: of two processes that read the same due row, the second's UPDATE
matches nothing (PostgreSQL re-checks the condition on the row the first committed). A process
that dies during an attempt leaves its lease to expire, and the notification is tried again
then: delivery is at least once across a crash, exactly once otherwise.

The notifications of one alert to one receiver go in order: 'closed' waits until 'opened' is
delivered or has failed for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Exists, F, OuterRef, QuerySet

from alerts.models import Notification

# Failed attempt n waits RETRY_FIRST * 2**(n-1), at most RETRY_LONGEST: 10 s, 20 s, 40 s ... 1 h;
# attempt MAX_ATTEMPTS is the last (about 3.4 hours after the first).
RETRY_FIRST = timedelta(seconds=10)
RETRY_LONGEST = timedelta(hours=1)
MAX_ATTEMPTS = 12
# Longer than any attempt can take (a few network operations of NETMETRICS_NOTIFY_TIMEOUT each).
LEASE = timedelta(minutes=10)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the attempts-th failed attempt."""
    return min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_LONGEST)


def due(now: datetime) -> QuerySet[Notification]:
    """Notifications to attempt now, the longest-waiting first."""
    earlier_pending = Notification.objects.filter(
        alert=OuterRef("alert"),
        channel=OuterRef("channel"),
        target=OuterRef("target"),
        pk__lt=OuterRef("pk"),
        delivered_at=None,
        next_attempt_at__isnull=False,
    )
    return (
        Notification.objects.filter(delivered_at=None, next_attempt_at__lte=now)
        .exclude(Exists(earlier_pending))
        .order_by("next_attempt_at", "pk")
    )


def claim(limit: int, now: datetime) -> list[Notification]:
    """Up to limit due notifications, each now this process's to attempt (attempts counted)."""
    claimed: list[Notification] = []
    for notification in due(now)[: limit * 2]:
        lease = now + LEASE
        taken = Notification.objects.filter(
            pk=notification.pk, next_attempt_at=notification.next_attempt_at, delivered_at=None
        ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
        if taken:
            notification.next_attempt_at = lease
            notification.attempts += 1
            claimed.append(notification)
            if len(claimed) == limit:
                break
    return claimed


def delivered(notification: Notification, at: datetime) -> None:
    Notification.objects.filter(pk=notification.pk).update(
        delivered_at=at, next_attempt_at=None, last_error=""
    )


def failed(notification: Notification, error: str, at: datetime) -> datetime | None:
    """Record a failed attempt: when the next one is, or None once it has given up."""
    retry = (
        at + retry_delay(notification.attempts) if notification.attempts < MAX_ATTEMPTS else None
    )
    Notification.objects.filter(pk=notification.pk).update(last_error=error, next_attempt_at=retry)
    return retry


def retry_now(notifications: QuerySet[Notification], now: datetime) -> int:
    """Make the undelivered ones due now (one more attempt each, even after giving up)."""
    return notifications.filter(delivered_at=None).update(next_attempt_at=now)
