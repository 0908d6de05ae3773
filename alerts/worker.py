"""The web process's notification worker: delivers the outbox and evaluates the stale rule.

It runs in each web process (netmetrics/asgi.py starts it, so `manage.py serve`, `make run`,
the web unit and `manage.py runserver` all have it; NETMETRICS_NOTIFY=0 turns it off), never in
the sampler, whose tick only writes the Notification rows. One daemon thread polls: every
POLL_SECONDS it claims due notifications (alerts/outbox.py: each is claimed by one process of
all those on the database), as many as it has free senders, and hands each to a pool of
SENDERS threads; every STALE_EVERY seconds it evaluates the stale rule. A receiver that
accepts and never answers holds one sender for NETMETRICS_NOTIFY_TIMEOUT per attempt, and the
other senders go on meanwhile. A failed attempt is one warning line, and a retry later
(alerts/outbox.py's backoff).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, connection
from django.utils import timezone

from alerts import delivery, outbox, stale
from alerts.models import Notification

log = logging.getLogger("netmetrics.alerts")

SENDERS = 4
POLL_SECONDS = 1.0


class Worker:
    """The polling thread and its senders; start() once, stop() to end both (tests)."""

    def __init__(self, senders: int = SENDERS, poll: float = POLL_SECONDS) -> None:
        self.senders = senders
        self.poll = poll
        self._free = senders
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(senders, thread_name_prefix="netmetrics-notify")
        self._thread = threading.Thread(target=self._run, name="netmetrics-alerts", daemon=True)
        self._database_down = False

    def start(self) -> None:
        self._thread.start()
        log.info("delivering alert notifications (%d senders)", self.senders)

    def stop(self) -> None:
        """End the polling, wait for the attempts in flight, and close the thread's
        connection."""
        self._stopping.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        next_stale = time.monotonic()
        try:
            while not self._stopping.wait(self.poll):
                try:
                    if time.monotonic() >= next_stale:
                        next_stale = time.monotonic() + stale.STALE_EVERY
                        stale.evaluate(timezone.now())
                    self._dispatch()
                except DatabaseError as exc:
                    self._database_failed(exc)
                except Exception:  # a bug: logged, and the worker goes on
                    log.exception("alert notifications: unexpected error")
                else:
                    self._database_down = False
        finally:
            connection.close()

    def _dispatch(self) -> None:
        with self._lock:
            free = self._free
        if not free:
            return
        for notification in outbox.claim(free, timezone.now()):
            with self._lock:
                self._free -= 1
            self._pool.submit(self._attempt, notification)

    def _attempt(self, notification: Notification) -> None:
        try:
            try:
                delivery.send(notification)
            except delivery.DeliveryFailed as exc:
                error = str(exc)
            except Exception as exc:  # a bug, not the receiver: recorded and retried all the same
                log.exception("alert notifications: unexpected error")
                error = f"{type(exc).__name__}: {exc}"
            else:
                outbox.delivered(notification, timezone.now())
                return
            retry = outbox.failed(notification, error, timezone.now())
            log.warning(
                "%s notification %s of alert %s to %s failed (attempt %d): %s; %s",
                notification.event,
                notification.pk,
                notification.alert_id,
                notification.target,
                notification.attempts,
                error,
                f"retrying at {retry:%H:%M:%S}" if retry else "given up",
            )
        except DatabaseError as exc:
            self._database_failed(exc)  # its lease expires: it is attempted again then
        finally:
            connection.close()  # a sender's own, idle until the next notification
            with self._lock:
                self._free += 1

    def _database_failed(self, exc: DatabaseError) -> None:
        """One warning until the database answers again; a fresh connection next time."""
        if not self._database_down:
            log.warning("alert notifications: the database does not answer (%s)", exc)
            self._database_down = True
        connection.close()


_worker: Worker | None = None
_started = threading.Lock()


def start_worker() -> Worker:
    """This process's worker, started on the first call."""
    global _worker
    with _started:
        if _worker is None:
            _worker = Worker()
            _worker.start()
        return _worker
