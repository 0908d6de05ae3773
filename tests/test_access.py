"""Who may see traffic (access/): every route, logins, tokens, basic auth, the viewer group, and
the loopback-open mode."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from access.models import ApiToken
from access.rules import LOOPBACK_OPEN, REQUIRED, VIEWER_GROUP, default_mode
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db

# The routes that answer without credentials, by name, and why. Nothing else may.
EXEMPT = {
    "health": "a probe's: says OK or why the database cannot answer, nothing about traffic",
    "login": "the login page",
    "admin:login": "the admin's login page",
}


def routes(
    patterns: list[URLPattern | URLResolver] | None = None, prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, URLPattern]]:
    """Every URL pattern of the project, as (name, a path that it matches, pattern)."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        here = prefix + example(str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from routes(pattern.url_patterns, here, inner)
        else:
            yield f"{namespace}{pattern.name or pattern.lookup_str}", here, pattern


def example(pattern: str) -> str:
    """A path that the pattern (Django route or regex) matches: parameters get sample values."""
    path = re.sub(r"\(\?P<\w+>([^|)]*)[^)]*\)", lambda m: _sample(m[1]), pattern)
    path = re.sub(r"<int:\w+>", "1", path)
    path = re.sub(r"<(?:\w+:)?\w+>", "x", path)
    return path.removeprefix("^").removesuffix("$").replace("/?", "/").replace("\\", "")


def _sample(alternatives: str) -> str:
    """A value for a regex group: its first alternative when it lists names, else 1."""
    return alternatives if re.fullmatch(r"[\w-]+", alternatives) else "1"


def demands_credentials(client: Client, path: str) -> str | None:
    """None if an anonymous GET of path is refused (401 asking for credentials, or a redirect
    to a login page), else what it answered."""
    response = client.get(path)
    if response.status_code == 401 and response.headers.get("WWW-Authenticate"):
        return None
    location = response.headers.get("Location", "")
    if response.status_code == 302 and re.match(r"^/(admin/)?login/\?next=", location):
        return None
    return f"{response.status_code} {location or response.content[:80]!r}"


@override_settings(NETMETRICS_AUTH=REQUIRED)
def test_every_route_demands_credentials_or_is_named_exempt() -> None:
    """Walks the URL patterns, so that a route added later without protection fails here."""
    client = Client()
    seen = set()
    for name, path, pattern in routes():
        assert resolve("/" + path).func == pattern.callback, (name, path)  # a real example
        seen.add(name)
        answer = demands_credentials(client, "/" + path)
        if name in EXEMPT:
            assert answer is not None, f"{name} is listed exempt but demands credentials"
        else:
            assert answer is None, f"{name} ({path}) answers {answer} without credentials"
    assert set(EXEMPT) <= seen  # the list names no route that is gone
    assert {"dashboard", "realtime", "metrics", "schema", "docs", "admin:index"} <= seen
    assert client.get("/health").content == b"OK"


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("vera", password="correct horse")
    user.groups.add(Group.objects.get(name=VIEWER_GROUP))
    return user


@pytest.fixture
def recorded() -> None:
    start_run().record(counters(rx_total_bytes=1500, rx_total_packets=1), at(1), 1.0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@override_settings(NETMETRICS_AUTH=REQUIRED)
def test_login_sees_the_dashboard_and_api_and_logout_ends_it(viewer, recorded) -> None:
    client = Client()
    assert client.get("/api/metrics/realtime").status_code == 401
    assert client.get("/").headers["Location"] == "/login/?next=/"
    response = client.post("/login/", {"username": "vera", "password": "wrong"})
    assert response.status_code == 200 and b"enter a correct username and password" in (
        response.content
    )
    response = client.post("/login/", {"username": "vera", "password": "correct horse"})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert client.get("/").status_code == 200
    assert client.get("/api/metrics/realtime").json()["bandwidth_bps"] == 1500 * 8
    assert client.get("/admin/").headers["Location"] == "/admin/login/?next=/admin/"  # not staff
    assert client.post("/logout/").headers["Location"] == "/login/"
    assert client.get("/api/metrics/realtime").status_code == 401


@override_settings(NETMETRICS_AUTH=REQUIRED)
def test_tokens_read_as_their_user_until_revoked(viewer, recorded) -> None:
    client = Client()
    row, token = ApiToken.objects.issue(viewer, "script")
    assert token.startswith("nm_") and len(token) == 46
    assert row.digest != token and token not in str(row.__dict__)  # only the hash is kept
    assert client.get("/api/interfaces", headers=bearer(token)).status_code == 200
    assert (
        client.get("/api/interfaces", headers={"Authorization": f"Token {token}"}).status_code
        == 200
    )
    assert ApiToken.objects.get().last_used_at is not None
    # Read-only: no token may change anything, whatever its user may do.
    assert client.post("/api/interfaces", headers=bearer(token)).status_code == 403
    assert client.delete("/api/interfaces", headers=bearer(token)).status_code == 403
    wrong = client.get("/api/interfaces", headers=bearer(token[:-1] + "x"))
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "unknown or revoked token"})
    assert client.get("/api/interfaces", headers={"Authorization": "Bearer"}).status_code == 401
    ApiToken.objects.update(revoked_at=timezone.now())
    assert client.get("/api/interfaces", headers=bearer(token)).status_code == 401
    _, other = ApiToken.objects.issue(viewer)
    viewer.is_active = False
    viewer.save()
    assert client.get("/api/interfaces", headers=bearer(other)).status_code == 401


@override_settings(NETMETRICS_AUTH=REQUIRED)
def test_metrics_takes_a_bearer_token_or_basic_auth(viewer, recorded) -> None:
    client = Client()
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="netmetrics"'
    _, token = ApiToken.objects.issue(viewer, "prometheus")
    scraped = client.get("/metrics", headers=bearer(token))
    assert scraped.status_code == 200
    series = (
        f'{{class="total",direction="rx",host="{settings.NETMETRICS_HOST_NAME}",interface="eth0"}}'
    )
    assert f"netmetrics_bytes_total{series} 1500.0".encode() in scraped.content
    assert client.get("/metrics", headers=basic("vera", "correct horse")).status_code == 200
    assert client.get("/metrics", headers=basic("vera", "wrong")).status_code == 401
    assert client.get("/metrics", headers=basic("nobody", "x")).status_code == 401


@override_settings(NETMETRICS_AUTH=REQUIRED)
def test_only_viewers_and_superusers_see_traffic(recorded) -> None:
    User.objects.create_user("olga", password="pw")  # a login, in no group
    User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(User.objects.get(username="olga"))
    assert client.get("/").status_code == 403
    refused = client.get("/api/metrics/realtime")
    assert refused.status_code == 403 and "viewer group" in refused.json()["detail"]
    client.force_login(User.objects.get(username="root"))
    assert client.get("/").status_code == 200
    assert client.get("/api/metrics/realtime").status_code == 200
    assert client.get("/admin/").status_code == 200


@override_settings(NETMETRICS_AUTH=LOOPBACK_OPEN, NETMETRICS_TRUSTED_PROXY=False)
def test_loopback_open_opens_loopback_only_and_not_through_a_proxy(recorded) -> None:
    assert Client(REMOTE_ADDR="127.0.0.1").get("/api/metrics/realtime").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.7").get("/api/metrics/realtime").status_code == 401
    assert Client(REMOTE_ADDR="192.0.2.7").get("/").status_code == 302
    # A proxy on this host connects from loopback: what it forwards is not a local user.
    proxied = Client(REMOTE_ADDR="127.0.0.1", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.get("/api/metrics/realtime").status_code == 401
    assert Client(REMOTE_ADDR="127.0.0.1").get("/admin/").status_code == 302  # admin: a login
    with override_settings(NETMETRICS_TRUSTED_PROXY=True):
        # Behind a trusted proxy the server has already made the client address the real one.
        assert proxied.get("/api/metrics/realtime").status_code == 200


def test_the_default_mode_follows_the_bind_address() -> None:
    assert default_mode("127.0.0.1") == default_mode("::1") == LOOPBACK_OPEN
    assert default_mode("localhost") == default_mode("127.0.0.2") == LOOPBACK_OPEN
    assert default_mode("0.0.0.0") == default_mode("::") == REQUIRED
    assert default_mode("192.0.2.1") == default_mode("monitor.example") == REQUIRED


def test_createtoken_prints_a_token_once_and_keeps_its_hash(viewer) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("createtoken", user="vera", name="prometheus", stdout=out, stderr=err)
    token = out.getvalue().strip()
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.hint) == (viewer, "prometheus", token[:10])
    assert ApiToken.objects.find(token) == row and err.getvalue() == ""
    User.objects.create_user("olga")
    call_command("createtoken", user="olga", stdout=io.StringIO(), stderr=err)
    assert "add them to the 'viewer' group" in err.getvalue()
    with pytest.raises(CommandError, match="no user 'ghost': create one first"):
        call_command("createtoken", user="ghost")


def test_the_admin_lists_and_revokes_tokens_but_cannot_make_one(viewer) -> None:
    row, token = ApiToken.objects.issue(viewer, "old script")
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="pw"))
    listing = admin.get("/admin/access/apitoken/")
    assert listing.status_code == 200 and b"old script" in listing.content
    assert token.encode() not in listing.content and row.hint.encode() in listing.content
    assert admin.get("/admin/access/apitoken/add/").status_code == 403
    admin.post(
        "/admin/access/apitoken/",
        {"action": "revoke", "_selected_action": [row.pk]},
    )
    assert ApiToken.objects.get().revoked_at is not None
    assert ApiToken.objects.find(token) is None


@override_settings(NETMETRICS_AUTH=REQUIRED)
def test_a_locked_database_does_not_refuse_a_token_its_read(viewer, recorded, monkeypatch, caplog):
    """Noting a token's use is a write; SQLite may be busy with the sampler's: the read goes on."""
    _, token = ApiToken.objects.issue(viewer)

    def locked(*args: object, **kwargs: object) -> int:
        raise OperationalError("database is locked")

    monkeypatch.setattr("django.db.models.QuerySet.update", locked)
    assert Client().get("/api/interfaces", headers=bearer(token)).status_code == 200
    assert "its last use not noted: database is locked" in caplog.text


def test_the_schema_describes_each_way_in() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert set(schema["components"]["securitySchemes"]) == {"bearerAuth", "basicAuth", "cookieAuth"}
    realtime = schema["paths"]["/api/metrics/realtime/"]["get"]["security"]
    assert realtime == [{"bearerAuth": []}, {"basicAuth": []}, {"cookieAuth": []}]
