"""Every operation of /api/schema/ fuzzed by schemathesis: no 5xx, answers as documented.

The app runs in-process through Django's WSGI handler, in the test's own thread, so it sees the
test database and its data through pytest-django's ordinary (rolled back) transaction. The data
is a few runs and samples written through SamplerRun.record, as the sampler writes them, so the
200 answers carry real numbers and not only the 404 of an empty database.

Generated queries are mostly invalid for this API's semantics though valid for the schema (an
interface name that was never sampled is a schema-valid string, and a 400 by design), so
``positive_data_acceptance`` also accepts 400; every other default check runs as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings

from metrics.models import FlowMinute, LiveFlows, MinuteRollup, SamplerRun
from tests.samples import counters, start_run

pytestmark = pytest.mark.django_db

# Bounded so the whole module runs in well under a minute; raise it for a deeper search.
MAX_EXAMPLES = int(os.environ.get("NETMETRICS_SCHEMA_EXAMPLES", "50"))


def _record_run(iface: str, egress: bool, seconds: int, ago: timedelta) -> SamplerRun:
    """A run with `seconds` one-second samples of steady traffic, ending `ago` before now."""
    end = timezone.now() - ago
    run = start_run(iface, egress=egress, started_at=end - timedelta(seconds=seconds + 1))
    total = {}
    for i in range(1, seconds + 1):
        total = {
            "rx_total_bytes": 1500 * i,
            "rx_total_packets": 10 * i,
            "rx_ipv4_bytes": 1500 * i,
            "rx_ipv4_packets": 10 * i,
            "rx_tcp_bytes": 900 * i,
            "rx_tcp_packets": 6 * i,
            "rx_https_bytes": 900 * i,
            "rx_https_packets": 6 * i,
        }
        if egress:
            total |= {"tx_total_bytes": 400 * i, "tx_total_packets": 4 * i}
        run.record(counters(**total), end - timedelta(seconds=seconds - i), 1.0)
    return run


def _record_flows(run: SamplerRun) -> None:
    """Flows on for run: a live table, and the same flow (over IPv4, and over IPv6 to an
    unnamed protocol) in each of the last three minutes."""
    run.flow_table = 4096
    run.save(update_fields=["flow_table"])
    ends = {"local_port": 50000, "remote_port": 443}
    counts = {"rx_packets": 9, "rx_bytes": 9000, "tx_packets": 3, "tx_bytes": 300}
    assert run.last_sample is not None
    LiveFlows.objects.create(
        run=run,
        timestamp=run.last_sample.timestamp,
        seconds=40.0,
        dropped=1,
        flows=[
            {
                "protocol": 6,
                "local": "10.0.0.1",
                "remote": "10.0.0.2",
                **ends,
                **{f"{d}_{u}": [8.0, 4.0, 2.0] for d in ("rx", "tx") for u in ("bps", "pps")},
                **counts,
            }
        ],
    )
    minute = MinuteRollup.bucket_start(timezone.now())
    for ago in range(3):
        start = minute - timedelta(minutes=ago)
        for protocol, local, remote in [(6, "10.0.0.1", "10.0.0.2"), (132, "fd00::1", "fd00::2")]:
            FlowMinute.objects.create(
                **run.series.filter(),
                start=start,
                protocol=protocol,
                local=local,
                remote=remote,
                **ends,
                **counts,
            )


@pytest.fixture(autouse=True)
def connection_kept() -> Iterator[None]:
    """As Django's test client does: requests do not close the connection, whose transaction
    is the test's (SQLite's in-memory test database ignores a close; PostgreSQL's does not)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def sampled() -> None:
    """eth0: an old stopped run and a current one (with egress, and flows); wlan0: ingress only."""
    old = _record_run("eth0", egress=True, seconds=30, ago=timedelta(hours=3))
    old.stop(timezone.now() - timedelta(hours=3))
    _record_flows(_record_run("eth0", egress=True, seconds=90, ago=timedelta(seconds=0)))
    _record_run("wlan0", egress=False, seconds=20, ago=timedelta(minutes=5))


def from_loopback(app: WSGIHandler) -> Callable[[dict, Callable], Iterable[bytes]]:
    """app as a client on this host's loopback reaches it, which needs no login by default
    (access/rules.py): werkzeug's test client, unlike Django's, sends no REMOTE_ADDR."""

    def call(environ: dict, start_response: Callable) -> Iterable[bytes]:
        return app({**environ, "REMOTE_ADDR": "127.0.0.1"}, start_response)

    return call


# Loaded at collection: generating the schema reads no database. (schemathesis.pytest.from_fixture
# would load it per test, but 4.32.5 reads a pytest-internal attribute that pytest 9 removed.)
schema = schemathesis.openapi.from_wsgi("/api/schema/", from_loopback(get_wsgi_application()))
# The API's 400 for a schema-valid value that names no sampled interface (or since >= until, or
# too many points) is by design; the schema cannot express it.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses,
    "400",
]
# A loopback client needs no credentials (loopback-open, the default): requests without the
# schema's session cookie, or with a wrong one, get data by design, so none is generated or
# checked here. tests/test_access_scan.py scans a server that requires a login.
schema.config.generation.update(with_security_parameters=False)
schema.config.checks.ignored_auth.enabled = False


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, sampled: None) -> None:
    case.call_and_validate()
