"""Sending one notification: its payload POSTed to a webhook, or mailed through Django's mail
settings. Either returns once delivered or raises DeliveryFailed with a one-line reason, within
settings.NETMETRICS_NOTIFY_TIMEOUT seconds of each network operation."""

from __future__ import annotations

import http.client
import json
import smtplib
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from alerts.models import Notification

USER_AGENT = "netmetrics-alerts/1"
# The e-mail's first lines; the payload's other fields follow by name (PostgreSQL's jsonb keeps
# no key order).
EMAIL_FIRST = ("rule", "host", "interface", "value", "peak", "started_at", "ended_at")
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class DeliveryFailed(Exception):
    """Not delivered; the message is what the admin shows as the notification's last error."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer the receiver did not mean for a POST: a failure (HTTPError)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def send(notification: Notification) -> None:
    """Deliver by the notification's channel."""
    if notification.channel == "webhook":
        post_webhook(notification.target, notification.payload)
    else:
        send_email(notification.target, notification.payload)


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST the payload as JSON; any 2xx answer is delivered, anything else a failure."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    try:
        with _opener.open(request, timeout=settings.NETMETRICS_NOTIFY_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeliveryFailed(f"{url}: {exc.reason}") from None
    except TimeoutError:
        raise DeliveryFailed(
            f"no answer within {settings.NETMETRICS_NOTIFY_TIMEOUT} s (NETMETRICS_NOTIFY_TIMEOUT)"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}")


def email_unconfigured() -> bool:
    """Whether e-mail would go to Django's SMTP backend with no server set (the admin warns)."""
    return settings.EMAIL_BACKEND == SMTP_BACKEND and not settings.EMAIL_HOST


def send_email(addresses: str, payload: dict[str, Any]) -> None:
    """One plain-text message to the comma-separated addresses."""
    if email_unconfigured():
        raise DeliveryFailed("no mail server: set NETMETRICS_EMAIL_HOST")
    subject, body = email_text(payload)
    message = EmailMessage(
        subject,
        body,
        settings.DEFAULT_FROM_EMAIL,
        [address.strip() for address in addresses.split(",") if address.strip()],
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    try:
        message.send()
    except (smtplib.SMTPException, OSError, ValueError) as exc:  # a timeout among them
        server = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        raise DeliveryFailed(f"mail server {server}: {type(exc).__name__}: {exc}") from None


def email_text(payload: dict[str, Any]) -> tuple[str, str]:
    """The subject and body of a notification's e-mail: the payload's fields, one a line."""
    alert = payload["alert"]
    subject = (
        f"[netmetrics] {alert['rule']} {payload['event']}: {alert['host']} {alert['interface']}"
    )
    names = [name for name in EMAIL_FIRST if name in alert]
    names += sorted(set(alert) - set(EMAIL_FIRST))
    lines = [f"Alert {payload['event']}.", ""]
    lines += [f"{name}: {'' if alert[name] is None else alert[name]}" for name in names]
    return subject, "\n".join(lines) + "\n"
