"""The REST API's and /metrics' side of access/rules.py: tokens, passwords, sessions, and the
permission every view has unless it says otherwise (settings.REST_FRAMEWORK)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from access import lockout
from access.models import ApiToken
from access.rules import request_may_view

if TYPE_CHECKING:  # rest_framework.views imports this module (its default classes)
    from rest_framework.views import APIView

REALM = 'realm="netmetrics"'


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` (Prometheus' `authorization` in a scrape config), or
    `Token <token>` as DRF's own token scheme spells it.

    First in the list: its WWW-Authenticate is why a request without credentials gets 401, not
    403."""

    SCHEMES = (b"bearer", b"token")

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.SCHEMES:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("a token header is 'Bearer <token>'")
        token = ApiToken.objects.find(parts[1].decode("latin-1"))
        if token is None:
            raise exceptions.AuthenticationFailed("unknown or revoked token")
        token.used()
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f"Bearer {REALM}"


class LockedOut(exceptions.APIException):
    """429 with Retry-After (DRF's handler sets it from `wait`), saying why and for how long."""

    status_code = 429
    default_code = "locked_out"

    def __init__(self) -> None:
        super().__init__(lockout.message())
        self.wait = lockout.cooloff().total_seconds()


class PasswordAuthentication(authentication.BasicAuthentication):
    """HTTP basic auth with a user's password (for a Prometheus that has no token), through
    Django's authenticate(), so that failed attempts count against the login limit
    (access/lockout.py)."""

    www_authenticate_realm = "netmetrics"

    def authenticate_credentials(
        self, userid: str, password: str, request: Request | None = None
    ) -> tuple[Any, None]:
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            # axes flags the request it was given, this DRF one, not the HttpRequest that its
            # middleware would answer for: the 429 is given here, in the API's JSON.
            if getattr(request, "axes_locked_out", False):
                raise LockedOut() from None
            raise


class CanViewTraffic(permissions.BasePermission):
    """A viewer (access/rules.py), or a client that needs no login; tokens read only."""

    message = "you are not allowed to see traffic: ask an administrator for the viewer group"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, ApiToken) and request.method not in permissions.SAFE_METHODS:
            return False
        return request_may_view(request)
