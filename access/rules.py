"""Who may see traffic without logging in, and who may see it once known: the one rule that the
pages, the REST API, /metrics and the WebSocket all apply.

NETMETRICS_AUTH is `required` (everyone logs in or brings a token) or `loopback-open` (a client
on this host's loopback needs neither: `make run` on a laptop). A request that came through a
proxy is not a local user even though the proxy connects from loopback: with forwarding headers
and no NETMETRICS_TRUSTED_PROXY it must log in (behind a trusted proxy, daphne's --proxy-headers
has already made the client address the real one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:  # settings import this module before the apps are ready
    from django.contrib.auth.models import AbstractUser, AnonymousUser
    from django.http import HttpRequest
    from rest_framework.request import Request

REQUIRED = "required"
LOOPBACK_OPEN = "loopback-open"
MODES = (REQUIRED, LOOPBACK_OPEN)

VIEWER_GROUP = "viewer"
VIEW_PERMISSION = "access.view_traffic"  # the viewer group's: dashboard, API, /metrics

FORWARDING_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


def is_loopback(address: str | None) -> bool:
    """Whether address (an IP, or a bind address such as 'localhost') is this host's loopback."""
    if not address:
        return False
    if address.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def default_mode(bind: str) -> str:
    """`loopback-open` for a server bound to loopback only, else `required`."""
    return LOOPBACK_OPEN if is_loopback(bind) else REQUIRED


def open_without_login(client: str | None, header_names: Iterable[bytes]) -> bool:
    """Whether a client at this address, whose request carries these headers (lower-case
    names), may see traffic without credentials."""
    if settings.NETMETRICS_AUTH != LOOPBACK_OPEN or not is_loopback(client):
        return False
    if settings.NETMETRICS_TRUSTED_PROXY:
        return True
    return not any(name in FORWARDING_HEADERS for name in header_names)


def request_open_without_login(meta: dict) -> bool:
    """open_without_login for a Django request, by its META."""
    names = [key[5:].lower().replace("_", "-").encode() for key in meta if key.startswith("HTTP_")]
    return open_without_login(meta.get("REMOTE_ADDR"), names)


def request_may_view(request: HttpRequest | Request) -> bool:
    """The rule for one request (a page's or the API's): it needs no login, or its user may
    view."""
    return request_open_without_login(request.META) or may_view(request.user)


def may_view(user: AbstractUser | AnonymousUser | None) -> bool:
    """A known, active user with the viewer's permission (superusers have every permission)."""
    return bool(user and user.is_authenticated and user.has_perm(VIEW_PERMISSION))


def anyone_may_view() -> bool:
    """Whether some active user passes may_view: a superuser, or one with the permission of
    their own or through a group (the viewer group). The database query of ModelBackend's
    has_perm, for every user at once."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    app_label, codename = VIEW_PERMISSION.split(".")
    own = Q(
        user_permissions__codename=codename, user_permissions__content_type__app_label=app_label
    )
    grouped = Q(
        groups__permissions__codename=codename,
        groups__permissions__content_type__app_label=app_label,
    )
    return (
        get_user_model()
        .objects.filter(Q(is_superuser=True) | own | grouped, is_active=True)
        .exists()
    )
