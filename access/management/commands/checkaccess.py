"""manage.py checkaccess: refuse, in one line and exit status 1, a web server that demands a
login (NETMETRICS_AUTH=required, the default off loopback) while nobody could log in, or one
that anyone could enter by claiming a loopback address through X-Forwarded-For. `make run` runs
it before it starts anything, and `manage.py serve` before it listens."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError

from access.rules import LOOPBACK_OPEN, REQUIRED, anyone_may_view, is_loopback

CREATE = "create a login first: .venv/bin/python manage.py createsuperuser"


def viewers_exist() -> bool:
    try:
        return anyone_may_view()
    except DatabaseError as exc:  # PostgreSQL's message goes on over more lines: the first
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        name = settings.DATABASES["default"]["NAME"]
        raise SystemExit(
            f"netmetrics: cannot read the users from the database {name}: {cause} "
            "(run 'make setup' for migrations)"
        ) from None


class Command(BaseCommand):
    help = (
        "Exit 1 if the web server would demand a login and no user may see traffic, or would "
        "trust a forwarded loopback address from anyone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        bind = settings.NETMETRICS_BIND
        open_to_forgers = settings.NETMETRICS_AUTH == LOOPBACK_OPEN and not is_loopback(bind)
        if settings.NETMETRICS_TRUSTED_PROXY and open_to_forgers:
            # daphne believes X-Forwarded-For from anyone who reaches it.
            raise SystemExit(
                f"netmetrics: NETMETRICS_TRUSTED_PROXY=1 and NETMETRICS_AUTH={LOOPBACK_OPEN} "
                f"while listening on {bind} let in anyone who sends X-Forwarded-For: 127.0.0.1: "
                f"listen on 127.0.0.1 behind the proxy, or set NETMETRICS_AUTH={REQUIRED}"
            )
        if settings.NETMETRICS_AUTH != REQUIRED or viewers_exist():
            return
        why = (
            f"NETMETRICS_AUTH={REQUIRED}"
            if is_loopback(bind)
            else f"listening on {bind} opens the dashboard to the network"
        )
        raise SystemExit(f"netmetrics: {why}, and nobody can log in yet: {CREATE}")
