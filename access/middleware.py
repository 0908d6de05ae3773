"""The pages' side of access/rules.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponseBase

from access.rules import request_open_without_login


class LoginRequired(LoginRequiredMiddleware):
    """Every view demands a login, unless it is marked login_not_required, the client needs
    none (access/rules.py), or it is a REST framework view: those answer for themselves, with a
    401 in JSON instead of a redirect, and take tokens (access/drf.py). A view added later is
    protected without anyone remembering to."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if hasattr(view_func, "cls") or request_open_without_login(request.META):
            return None  # APIView.as_view() sets .cls
        return super().process_view(request, view_func, view_args, view_kwargs)


class SecureCookiesOverHttps:
    """Session and CSRF cookies are Secure on a request that came over HTTPS (directly, or by
    a trusted proxy's X-Forwarded-Proto), and not otherwise, so that plain-HTTP use on loopback
    keeps working."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.is_secure():
            for cookie in response.cookies.values():
                cookie["secure"] = True
        return response
