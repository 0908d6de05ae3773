"""manage.py serve: the web server (daphne) as `make run` and the web unit run it.

It listens on NETMETRICS_BIND, and passes daphne --proxy-headers when, and only when,
NETMETRICS_TRUSTED_PROXY is on: daphne then takes the client's address from X-Forwarded-For and
the scheme from X-Forwarded-Proto, headers that any client reaching it directly could forge.
First it runs checkaccess: no server that demands a login while nobody could log in.
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run the web server (daphne) on NETMETRICS_BIND, behind a trusted proxy if so set."
    requires_system_checks: list[str] = []  # daphne's own start-up is the check that counts

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="TCP port (8000)")

    def handle(self, *args: Any, port: int, verbosity: int, **options: Any) -> None:
        if not 1 <= port <= 65535:
            raise CommandError(f"--port {port}: expected 1-65535")
        call_command("checkaccess")
        module, name = settings.ASGI_APPLICATION.rsplit(".", 1)
        argv = ["--bind", settings.NETMETRICS_BIND, "--port", str(port), "-v", str(verbosity)]
        if settings.NETMETRICS_TRUSTED_PROXY:
            argv.append("--proxy-headers")
        CommandLineInterface().run([*argv, f"{module}:{name}"])
