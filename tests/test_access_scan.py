"""Nothing answers without a login: a real server (daphne) that requires one
(NETMETRICS_AUTH=required), scanned unauthenticated.

schemathesis sends every operation of the OpenAPI schema its generated requests (valid and
invalid parameters, made-up tokens, passwords and session cookies), and each must be refused
with a 401 or, once made-up passwords lock its address out, a 429 (see refusal()), never
answered with data: the database holds a sample, so a hole would show. The
schema is generated in-process, since /api/schema/ itself needs a login. The routes the schema
does not list are checked one by one: the pages redirect to the login page, and only /health, the
login pages and static files answer. (tests/test_live_access.py: the WebSocket closes with 4401.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings

from tests.processes import HttpSession, WebServer, migrated_env
from tests.writer import Writer

MAX_EXAMPLES = int(os.environ.get("NETMETRICS_SCHEMA_EXAMPLES", "50"))


def refusal(url: str, status: int) -> tuple[str, str]:
    """The content type a request of url must be refused in, and the pattern of that refusal:
    an error that says why (`detail`) and nothing else, in the format asked for (an error of
    ?format=csv is a CSV table). An unknown ?format= is a 404 instead: DRF negotiates the
    format before it authenticates."""
    asked = parse_qs(urlsplit(url).query).get("format", [""])[-1]  # DRF reads the last one
    if asked in ("", "json"):
        return "application/json", r'\{"detail":"[^"]+"\}'
    if asked == "csv":
        return "text/csv; charset=utf-8", r"parameter,message\r\ndetail,[^\r\n]+\r\n"
    assert status == 404
    return "application/json", r'\{"detail":"Not found."\}'


def unparsable_form(response: schemathesis.Response) -> bool:
    """A POST whose body says it is multipart/form-data without the boundary that would let
    it be read: Twisted (under daphne) refuses it with an empty 400 before the application
    sees it, so it tells nothing either."""
    ctype = response.request.headers.get("Content-Type", "")
    if isinstance(ctype, bytes):
        ctype = ctype.decode("latin-1")
    return (
        response.status_code == 400
        and response.content == b""
        and ctype.startswith("multipart/form-data")
        and "boundary=" not in ctype
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[WebServer]:
    tmp = tmp_path_factory.mktemp("scan")
    env = {**migrated_env(tmp / "db.sqlite3"), "NETMETRICS_AUTH": "required"}
    writer = Writer(env, tmp / "writer.log")
    try:
        writer("start", key="a", iface="eth0")
        writer("add", key="a", delta={"rx_total_packets": 1, "rx_total_bytes": 60})
    finally:
        writer.close()
    web = WebServer(env, tmp / "web.log")
    try:
        web.wait_healthy()
        yield web
    finally:
        web.stop()


# The schema /api/schema/ would serve (to a viewer), as JSON. /health is the one operation open
# to all: it is checked with the routes below.
schema = schemathesis.openapi.from_dict(
    json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
).exclude(path="/health/")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_401_in_json_without_a_login(
    case: schemathesis.Case, server: WebServer
) -> None:
    response = case.call(base_url=server.url)
    if unparsable_form(response):
        return
    # 401 without credentials or with made-up ones (the scheme's generated tokens and
    # passwords), 429 once the made-up passwords lock the address out (tests/test_login.py).
    assert response.status_code in (401, 429, 404), response.status_code
    content_type, pattern = refusal(response.request.url or "", response.status_code)
    assert response.headers["content-type"] == [content_type]
    assert re.fullmatch(pattern, response.content.decode()), response.content
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == ['Bearer realm="netmetrics"']


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/", 302, "/login/?next=/"),
        ("/?iface=eth0", 302, "/login/?next=/%3Fiface%3Deth0"),
        ("/admin/", 302, "/admin/login/?next=/admin/"),
        ("/admin/metrics/sample/", 302, "/login/?next=/admin/metrics/sample/"),
        ("/api/docs/", 401, None),
        ("/api/schema/", 401, None),
        ("/metrics", 401, None),
    ],
)
def test_the_routes_outside_the_schema_need_a_login(
    server: WebServer, path: str, status: int, location: str | None
) -> None:
    answer = HttpSession(server.url).request(path)
    assert (answer.status, answer.headers.get("Location")) == (status, location)
    assert b"eth0" not in answer.body


@pytest.mark.parametrize("path", ["/health", "/health/"])
def test_health_answers_to_all(server: WebServer, path: str) -> None:
    answer = HttpSession(server.url).request(path)
    assert (answer.status, answer.body) == (200, b"OK")


@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/static/netmetrics/api.js"])
def test_the_login_pages_and_static_files_answer_to_all(server: WebServer, path: str) -> None:
    assert HttpSession(server.url).request(path).status == 200
