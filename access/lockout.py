"""The limit on failed logins (django-axes, settings.AXES_*): whose failures count, and what a
locked-out client is told.

Failures count per client address and per username, each on its own, on every path that checks
a password through django.contrib.auth.authenticate(): the login page, the admin's, and HTTP
basic auth on the API and /metrics (access/drf.py). API tokens are not guessable and do not
count.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str | None:
    """The address failures count against: the connection's own, REMOTE_ADDR, which daphne has
    set from X-Forwarded-For only when NETMETRICS_TRUSTED_PROXY is on (manage.py serve). Never
    a header read here, which any client could forge to dodge the limit. None if it is not an
    address (the database's column would refuse it)."""
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def cooloff() -> timedelta:
    return settings.AXES_COOLOFF_TIME


def cooloff_text(span: timedelta) -> str:
    """15 minutes -> '15 minutes': in the largest unit that divides it."""
    count, unit = int(span.total_seconds()), "second"
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if count % size == 0:
            count, unit = count // size, name
            break
    return f"{count} {unit}{'' if count == 1 else 's'}"


def message() -> str:
    return (
        "too many failed logins from this address or for this username: try again in "
        f"{cooloff_text(cooloff())}"
    )


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the login pages' answer once the limit is reached, a page in the
    dashboard's style, 429 with Retry-After."""
    response = render(request, "registration/locked_out.html", {"message": message()}, status=429)
    response["Retry-After"] = str(int(cooloff().total_seconds()))
    return response
