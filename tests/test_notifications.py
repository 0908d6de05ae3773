"""Alert notifications: the outbox's claims and backoff, the worker delivering to real local
webhook receivers and by e-mail, two web processes on one database delivering each once, and
failures in the admin."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.test import Client

from alerts import delivery, outbox
from alerts.models import Alert, AlertRule, Notification
from alerts.worker import Worker
from metrics.models import Host, Series
from tests.processes import WebServer, db_rows, manage, manage_ok, migrated_env, wait_for
from tests.receivers import Receiver, StuckReceiver
from tests.samples import T0, at


def make_rule(name: str = "rx high", webhook: str = "", emails: str = "") -> AlertRule:
    return AlertRule.objects.create(
        name=name, metric="rx_bps", level=1e6, clear_level=5e5, webhook=webhook, emails=emails
    )


def eth0() -> Series:
    return Series(Host.objects.local().pk, "eth0")


def expected_payload(alert: Alert, event: str, ended: str | None, peak: float) -> dict:
    host = Host.objects.local()
    return {
        "event": event,
        "alert": {
            "id": alert.pk,
            "rule": "rx high",
            "metric": "rx_bps",
            "condition": "above",
            "level": 1e6,
            "clear_level": 5e5,
            "baseline": False,
            "host": host.name,
            "host_id": str(host.pk),
            "interface": "eth0",
            "started_at": "2026-11-27T12:00:00+00:00",
            "ended_at": ended,
            "value": 2e6,
            "peak": peak,
        },
    }


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start workers polling every 50 ms; all are stopped at the end."""
    started: list[Worker] = []

    def start(senders: int = 4) -> Worker:
        worker = Worker(senders=senders, poll=0.05)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def notification(alert: Alert, event: str) -> Notification:
    return Notification.objects.get(alert=alert, event=event)


# Outbox: no worker.


@pytest.mark.django_db
def test_an_alert_queues_one_notification_per_receiver_and_transition() -> None:
    rule = make_rule(webhook="http://127.0.0.1:9/hook", emails="a@example.com")
    alert = Alert.open(rule, eth0(), T0, 2e6)
    alert.close(at(60))
    alert.close(at(61))  # already closed (another process did): nothing more
    rows = Notification.objects.order_by("pk").values_list("event", "channel", "next_attempt_at")
    assert list(rows) == [
        ("opened", "webhook", T0),
        ("opened", "email", T0),
        ("closed", "webhook", at(60)),
        ("closed", "email", at(60)),
    ]


@pytest.mark.django_db
def test_a_due_notification_is_claimed_once_and_closed_waits_for_opened() -> None:
    alert = Alert.open(make_rule(webhook="http://127.0.0.1:9/hook"), eth0(), T0, 2e6)
    alert.close(at(1))
    [opened] = outbox.claim(10, at(5))
    assert (opened.event, opened.attempts, opened.next_attempt_at) == (
        "opened",
        1,
        at(5) + outbox.LEASE,
    )
    assert outbox.claim(10, at(5)) == []  # in flight; and 'closed' waits for it
    outbox.delivered(opened, at(6))
    [closed] = outbox.claim(10, at(6))
    assert closed.event == "closed"


@pytest.mark.django_db
def test_two_processes_that_read_the_same_due_row_claim_it_once(monkeypatch) -> None:
    Alert.open(make_rule(webhook="http://127.0.0.1:9/hook"), eth0(), T0, 2e6)
    # Each process's read of the due rows, both made before either claims.
    reads = [list(outbox.due(at(1))), list(outbox.due(at(1)))]
    monkeypatch.setattr(outbox, "due", lambda now: reads.pop(0))
    assert len(outbox.claim(1, at(1))) == 1
    assert outbox.claim(1, at(1)) == []
    assert Notification.objects.get().attempts == 1


@pytest.mark.django_db
def test_failed_attempts_back_off_exponentially_then_give_up() -> None:
    Alert.open(make_rule(webhook="http://127.0.0.1:9/hook"), eth0(), T0, 2e6)
    waits = []
    now = T0
    for _ in range(outbox.MAX_ATTEMPTS):
        [claimed] = outbox.claim(1, now)
        retry = outbox.failed(claimed, "HTTP 500 Internal Server Error", now)
        if retry is None:
            break
        waits.append((retry - now).total_seconds())
        now = retry
    assert waits == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    row = Notification.objects.get()
    assert (row.attempts, row.next_attempt_at, row.delivered_at, row.last_error) == (
        12,
        None,
        None,
        "HTTP 500 Internal Server Error",
    )
    assert outbox.claim(1, now + timedelta(days=1)) == []


# The worker, with real receivers.


@pytest.mark.django_db(transaction=True)
def test_each_transition_is_posted_once_in_order_by_two_workers(workers) -> None:
    with Receiver() as receiver:
        rule = make_rule(webhook=receiver.url)
        alert = Alert.open(rule, eth0(), T0, 2e6)
        alert.peak = 3e6
        alert.close(at(60))
        workers()
        workers()
        posts = receiver.wait_posts(2)
        wait_for(
            lambda: not Notification.objects.filter(delivered_at=None).exists(),
            10,
            "both marked delivered",
        )
        time.sleep(0.5)  # ten more polls of each worker: nothing more is sent
    assert [post.body for post in posts] == [
        expected_payload(alert, "opened", None, 2e6),
        expected_payload(alert, "closed", "2026-11-27T12:01:00+00:00", 3e6),
    ]
    assert posts[0].path == "/hook"
    assert posts[0].headers["content-type"] == "application/json"
    assert posts[0].headers["user-agent"] == delivery.USER_AGENT
    assert list(Notification.objects.values_list("attempts", "last_error")) == [(1, "")] * 2


@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_500_is_retried_and_delivered_once(workers, monkeypatch) -> None:
    monkeypatch.setattr(outbox, "RETRY_FIRST", timedelta(seconds=0.2))
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("netmetrics.alerts").addHandler(handler)
    try:
        with Receiver(statuses=(500,)) as receiver:
            alert = Alert.open(make_rule(webhook=receiver.url), eth0(), T0, 2e6)
            workers()
            receiver.wait_posts(2)
            wait_for(lambda: notification(alert, "opened").delivered_at, 10, "delivered")
            time.sleep(0.5)
    finally:
        logging.getLogger("netmetrics.alerts").removeHandler(handler)
    assert [post.body["event"] for post in receiver.posts] == ["opened", "opened"]
    row = notification(alert, "opened")
    assert (row.attempts, row.last_error, row.next_attempt_at) == (2, "", None)
    [failure] = [line for line in logged if "failed" in line]
    assert re.fullmatch(
        f"opened notification {row.pk} of alert {alert.pk} to {re.escape(receiver.url)} failed "
        r"\(attempt 1\): HTTP 500 Internal Server Error; retrying at \d\d:\d\d:\d\d",
        failure,
    ), failure


@pytest.mark.django_db(transaction=True)
def test_a_stuck_receiver_holds_up_no_other_rule(workers, settings) -> None:
    settings.NETMETRICS_NOTIFY_TIMEOUT = 3
    with StuckReceiver() as stuck, Receiver() as receiver:
        stuck_alert = Alert.open(make_rule("stuck", webhook=stuck.url), eth0(), T0, 2e6)
        Alert.open(make_rule("answering", webhook=receiver.url), eth0(), at(1), 2e6)
        workers()
        [post] = receiver.wait_posts(1)
        assert post.body["alert"]["rule"] == "answering"
        # The stuck attempt is still in flight: it has neither failed nor been delivered.
        held = notification(stuck_alert, "opened")
        assert (held.attempts, held.last_error, held.delivered_at) == (1, "", None)
        wait_for(lambda: notification(stuck_alert, "opened").last_error, 10, "the timeout")
    assert notification(stuck_alert, "opened").last_error == (
        "no answer within 3 s (NETMETRICS_NOTIFY_TIMEOUT)"
    )


@pytest.mark.django_db(transaction=True)
def test_email_goes_through_djangos_mail_settings(workers, settings) -> None:
    settings.DEFAULT_FROM_EMAIL = "netmetrics@example.org"
    alert = Alert.open(make_rule(emails="a@example.com, b@example.com"), eth0(), T0, 2e6)
    workers()
    wait_for(lambda: notification(alert, "opened").delivered_at, 10, "the mail sent")
    [message] = mail.outbox
    host = Host.objects.local()
    assert message.subject == f"[netmetrics] rx high opened: {host.name} eth0"
    assert message.to == ["a@example.com", "b@example.com"]
    assert message.from_email == "netmetrics@example.org"
    assert message.body == (
        "Alert opened.\n\n"
        f"rule: rx high\nhost: {host.name}\ninterface: eth0\nvalue: 2000000.0\n"
        "peak: 2000000.0\nstarted_at: 2026-11-27T12:00:00+00:00\nended_at: \n"
        f"baseline: False\nclear_level: 500000.0\ncondition: above\nhost_id: {host.pk}\n"
        f"id: {alert.pk}\nlevel: 1000000.0\nmetric: rx_bps\n"
    )


def test_without_a_mail_server_email_fails_naming_the_setting(settings) -> None:
    settings.EMAIL_BACKEND = delivery.SMTP_BACKEND
    settings.EMAIL_HOST = ""
    with pytest.raises(delivery.DeliveryFailed) as failure:
        delivery.send_email("a@example.com", {"event": "opened", "alert": {}})
    assert str(failure.value) == "no mail server: set NETMETRICS_EMAIL_HOST"


def test_a_mail_server_that_never_answers_costs_its_timeout(settings) -> None:
    settings.EMAIL_BACKEND = delivery.SMTP_BACKEND
    settings.EMAIL_TIMEOUT = 1
    with StuckReceiver() as stuck, pytest.raises(delivery.DeliveryFailed) as failure:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", stuck.port
        delivery.send_email(
            "a@example.com",
            {"event": "opened", "alert": {"rule": "r", "host": "h", "interface": "eth0"}},
        )
    assert str(failure.value) == (
        f"mail server 127.0.0.1:{settings.EMAIL_PORT}: SMTPServerDisconnected: "
        "Connection unexpectedly closed: timed out"
    )


MAIL_SETTINGS = (
    "from django.conf import settings as s; print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, "
    "s.EMAIL_USE_SSL, s.EMAIL_HOST_USER, s.EMAIL_HOST_PASSWORD, s.DEFAULT_FROM_EMAIL, "
    "s.EMAIL_TIMEOUT)"
)


def test_the_mail_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NETMETRICS_DB": str(tmp_path / "db.sqlite3"),
        "NETMETRICS_EMAIL_HOST": "smtp.example.org",
        "NETMETRICS_EMAIL_PORT": "465",
        "NETMETRICS_EMAIL_SECURITY": "tls",
        "NETMETRICS_EMAIL_USER": "alerts",
        "NETMETRICS_EMAIL_PASSWORD": "s3cret",
        "NETMETRICS_EMAIL_FROM": "nm@example.org",
        "NETMETRICS_NOTIFY_TIMEOUT": "7",
    }
    result = manage(env, "shell", "-v", "0", "-c", MAIL_SETTINGS)
    assert result.stdout.split() == [
        "smtp.example.org",
        "465",
        "False",
        "True",
        "alerts",
        "s3cret",
        "nm@example.org",
        "7",
    ]
    result = manage({**env, "NETMETRICS_EMAIL_SECURITY": "ssl"}, "shell", "-c", MAIL_SETTINGS)
    assert result.returncode != 0
    assert "NETMETRICS_EMAIL_SECURITY='ssl': use one of none, starttls, tls" in result.stderr


def test_a_refused_connection_and_a_redirect_are_failures() -> None:
    with StuckReceiver() as closed:
        url = closed.url
    with pytest.raises(delivery.DeliveryFailed, match="Connection refused"):
        delivery.post_webhook(url, {})
    with Receiver(statuses=(302,)) as receiver, pytest.raises(delivery.DeliveryFailed) as failure:
        delivery.post_webhook(receiver.url, {})
    assert str(failure.value) == "HTTP 302 Found"


# The admin.


@pytest.mark.django_db
def test_the_admin_shows_a_failure_and_retries_it(admin_client: Client, settings) -> None:
    settings.EMAIL_BACKEND = delivery.SMTP_BACKEND
    settings.EMAIL_HOST = ""
    alert = Alert.open(make_rule(emails="ops@example.com"), eth0(), T0, 2e6)
    row = notification(alert, "opened")
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        now = at(10**6 * attempt)  # after each retry's wait
        [claimed] = outbox.claim(1, now)
        outbox.failed(claimed, "no mail server: set NETMETRICS_EMAIL_HOST", now)
    page = admin_client.get("/admin/alerts/notification/?state=failed").content.decode()
    assert "no mail server: set NETMETRICS_EMAIL_HOST" in page
    assert "No mail server: e-mail notifications fail until NETMETRICS_EMAIL_HOST is set." in page
    assert "ops@example.com" in page
    assert (
        "ops@example.com"
        not in admin_client.get("/admin/alerts/notification/?state=delivered").content.decode()
    )
    alert_page = admin_client.get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert "no mail server: set NETMETRICS_EMAIL_HOST" in alert_page

    response = admin_client.post(
        "/admin/alerts/notification/",
        {"action": "retry_now", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "1 notification(s) will be attempted again now." in response.content.decode()
    row.refresh_from_db()
    assert row.next_attempt_at is not None and row.attempts == outbox.MAX_ATTEMPTS
    assert outbox.claim(1, row.next_attempt_at) == [row]


# Two web processes on one database: manage.py runserver (as the tests run it) and manage.py
# serve (as make run and the web unit do).

OPEN_AND_CLOSE = """
from metrics.models import Host, Series
from alerts.models import Alert, AlertRule
from tests.samples import T0, at
rule = AlertRule.objects.create(name="rx high", metric="rx_bps", level=1e6, clear_level=5e5,
                                webhook={url!r})
alert = Alert.open(rule, Series(Host.objects.local().pk, "eth0"), T0, 2e6)
alert.close(at(60))
"""


def test_two_web_processes_deliver_each_transition_once(tmp_path: Path) -> None:
    env = {**migrated_env(tmp_path / "db.sqlite3"), "NETMETRICS_NOTIFY": "1"}
    servers = [
        WebServer(env, tmp_path / "runserver.log"),
        WebServer(env, tmp_path / "serve.log", serve=True),
    ]
    try:
        for server in servers:
            server.wait_healthy()
        with Receiver() as receiver:
            manage_ok(env, "open and close", "shell", "-c", OPEN_AND_CLOSE.format(url=receiver.url))
            receiver.wait_posts(2, timeout=30)
            wait_for(
                lambda: (
                    db_rows(
                        env, "SELECT COUNT(*) FROM alerts_notification WHERE delivered_at IS NULL"
                    )
                    == [(0,)]
                ),
                10,
                "both marked delivered",
            )
            time.sleep(3)  # three more polls of each process: nothing more is sent
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert "delivering alert notifications (4 senders)" in server.output()
    assert [(post.body["event"], post.body["alert"]["ended_at"]) for post in receiver.posts] == [
        ("opened", None),
        ("closed", "2026-11-27T12:01:00+00:00"),
    ]
