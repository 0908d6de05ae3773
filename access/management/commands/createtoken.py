"""`manage.py createtoken --user NAME [--name LABEL]`: an API token for scripts and Prometheus."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.models import ApiToken
from access.rules import VIEWER_GROUP, may_view


class Command(BaseCommand):
    help = (
        "Make an API token for a user and print it, once: only its hash is kept. It reads what "
        "the user may see (read-only); revoke it in the admin (API tokens)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the username it acts as")
        parser.add_argument("--name", default="", help="what it is for, e.g. prometheus")

    def handle(self, *args: Any, user: str, name: str, **options: Any) -> None:
        User = get_user_model()
        try:
            owner = User.objects.get(**{User.USERNAME_FIELD: user})
        except User.DoesNotExist:
            raise CommandError(
                f"no user {user!r}: create one first (manage.py createsuperuser, or in the admin)"
            ) from None
        if not owner.is_active:
            raise CommandError(f"user {user!r} is inactive: a token of theirs would be refused")
        if len(name) > ApiToken._meta.get_field("name").max_length:  # type: ignore[operator]
            raise CommandError("--name: at most 100 characters")
        _, token = ApiToken.objects.issue(owner, name)
        self.stdout.write(token)
        if not may_view(owner):
            self.stderr.write(
                f"note: {user!r} may not see traffic yet: add them to the {VIEWER_GROUP!r} group "
                "in the admin, or the token is refused (403)"
            )
