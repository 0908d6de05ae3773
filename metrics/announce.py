"""How the sampler tells web processes that samples were written: PostgreSQL's NOTIFY.

SamplerRunQuerySet.record calls announce() inside the transaction that writes a tick's samples:
one notification per tick on CHANNEL, its payload the pks of the runs written, comma-separated.
PostgreSQL delivers a notification only when its transaction commits, and drops it when the
transaction rolls back: a listener (metrics/relay.py, connected with listen_parameters()) never
hears of a sample it cannot read yet, nor of one that was never stored. On SQLite, which has no
NOTIFY, announce() does nothing and the relay polls instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection, connections

CHANNEL = "netmetrics_samples"
# PostgreSQL refuses payloads of 8000 bytes or more. Even a few hundred runs in one tick fit;
# past that the payload is empty, which listeners take as "every active run".
MAX_PAYLOAD = 7999


def announce(using: str, run_pks: Iterable[int]) -> None:
    """NOTIFY the runs' pks on the database `using`, in its current transaction (PostgreSQL
    only)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    payload = ",".join(str(pk) for pk in sorted(set(run_pks)))
    if len(payload) > MAX_PAYLOAD:
        payload = ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])


def announced_runs(payloads: Iterable[str]) -> set[int] | None:
    """The run pks that notifications' payloads name together (empty: no notification); None
    when one names none (too many runs for a payload, or not announce()'s): read every active
    run."""
    runs: set[int] = set()
    for payload in payloads:
        try:
            named = {int(item) for item in payload.split(",")}
        except ValueError:
            return None
        runs |= named
    return runs


def listen_parameters() -> dict[str, Any]:
    """psycopg's connection arguments for a LISTEN connection: Django's own for the default
    database (NAME, USER, PASSWORD, HOST, PORT and OPTIONS, as its backend reads them, with
    DATABASE_URL's timeouts and keepalives: netmetrics/envconfig.py), without those of Django's
    cursors."""
    params = connection.get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    return params
