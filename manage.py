#!/usr/bin/env python
"""Django's command-line utility for netmetrics."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netmetrics.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a bad setting in the environment: its one line
        sys.exit(f"netmetrics: {exc}")


if __name__ == "__main__":
    main()
