"""The login page (Django's, in the dashboard's style) and the dashboard's viewer check."""

from __future__ import annotations

from django.contrib.auth.mixins import UserPassesTestMixin

from access.rules import request_may_view


class ViewerRequiredMixin(UserPassesTestMixin):
    """A page that shows traffic: for viewers and clients that need no login. A logged-in
    user without the permission gets 403; anyone else the login page (LoginRequired does that
    first)."""

    def test_func(self) -> bool:
        request = self.request  # type: ignore[attr-defined]
        return request_may_view(request)
