"""API tokens: what scripts and Prometheus present instead of a login.

A token is shown once, when it is made (`manage.py createtoken`); the database keeps only its
SHA-256, so a copy of the database gives no one access. A token acts as its user, read-only: it
is refused for anything but GET, HEAD and OPTIONS (access/drf.py).
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from django.conf import settings
from django.db import DatabaseError, models
from django.utils import timezone

log = logging.getLogger("netmetrics.access")

PREFIX = "nm_"  # makes a leaked token easy to recognise (secret scanners, logs)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def issue(self, user: models.Model, name: str = "") -> tuple[ApiToken, str]:
        """A new token for user: the row, and the token itself (not kept anywhere)."""
        token = PREFIX + secrets.token_urlsafe(32)
        row = self.create(user=user, name=name, digest=digest(token), hint=token[:10])
        return row, token

    def find(self, token: str) -> ApiToken | None:
        """The live token with this value, with its user; None if unknown or revoked."""
        return (
            self.select_related("user")
            .filter(digest=digest(token), revoked_at=None, user__is_active=True)
            .first()
        )


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, help_text="what it is for")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(
        max_length=10, editable=False, help_text="the token's first characters, to recognise it"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"
        permissions = [("view_traffic", "Can see the dashboard, the API and /metrics")]

    def __str__(self) -> str:
        return f"{self.hint}… ({self.name or 'no name'}, {self.user})"

    def used(self) -> None:
        """Note a use, at most once a minute: a scrape every few seconds writes nothing more.
        Best effort: a database too busy to take the write (SQLite while the sampler writes)
        must not refuse a read."""
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() >= 60:
            self.last_used_at = now
            try:
                ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            except DatabaseError as exc:
                log.warning("token %s: its last use not noted: %s", self.hint, exc)
