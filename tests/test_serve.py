"""Starting the web server: manage.py checkaccess (no server that demands a login nobody could
give), make run's refusal before anything starts, and manage.py serve behind a trusted proxy
(daphne's --proxy-headers) or not, on a real daphne."""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command

from access.rules import VIEWER_GROUP
from tests.processes import (
    ROOT,
    WebServer,
    cookies,
    db_rows,
    exchange,
    manage,
    migrated_env,
    unmigrated_env,
)

PASSWORD = "correct horse battery"
CREATE = "create a login first: .venv/bin/python manage.py createsuperuser"
OPEN = f"netmetrics: listening on 0.0.0.0 opens the dashboard to the network, and nobody can log in yet: {CREATE}"  # noqa: E501


def refusal() -> str | None:
    """checkaccess's one line, or None when it lets the server start."""
    try:
        call_command("checkaccess")
    except SystemExit as exc:
        return str(exc)
    return None


@pytest.mark.django_db
def test_checkaccess_wants_someone_who_may_view_when_a_login_is_required(settings) -> None:
    settings.NETMETRICS_AUTH = "loopback-open"
    assert refusal() is None  # nobody needs to log in
    settings.NETMETRICS_AUTH, settings.NETMETRICS_BIND = "required", "0.0.0.0"
    assert refusal() == OPEN
    settings.NETMETRICS_BIND = "127.0.0.1"
    assert refusal() == (
        f"netmetrics: NETMETRICS_AUTH=required, and nobody can log in yet: {CREATE}"
    )
    settings.NETMETRICS_BIND = "0.0.0.0"
    # Neither an inactive superuser nor an active user without the permission can see traffic.
    User.objects.create_superuser("gone", password=PASSWORD, is_active=False)
    carol = User.objects.create_user("carol", password=PASSWORD)
    assert refusal() == OPEN
    carol.groups.add(Group.objects.get(name=VIEWER_GROUP))
    assert refusal() is None
    carol.groups.clear()
    carol.user_permissions.add(Permission.objects.get(codename="view_traffic"))
    assert refusal() is None
    carol.user_permissions.clear()
    assert refusal() == OPEN
    User.objects.create_superuser("alice", password=PASSWORD)
    assert refusal() is None
    # Behind a trusted proxy, off loopback, loopback-open would open to any forged address.
    settings.NETMETRICS_TRUSTED_PROXY = True
    assert refusal() is None
    settings.NETMETRICS_AUTH = "loopback-open"
    assert refusal() == (
        "netmetrics: NETMETRICS_TRUSTED_PROXY=1 and NETMETRICS_AUTH=loopback-open while "
        "listening on 0.0.0.0 let in anyone who sends X-Forwarded-For: 127.0.0.1: listen on "
        "127.0.0.1 behind the proxy, or set NETMETRICS_AUTH=required"
    )
    settings.NETMETRICS_BIND = "127.0.0.1"
    assert refusal() is None


@pytest.fixture
def open_env(tmp_path: Path) -> dict[str, str]:
    """A migrated scratch database without users, and a server to listen on every address."""
    env = migrated_env(tmp_path / "nm.sqlite3")
    env.pop("NETMETRICS_AUTH", None)
    return {**env, "NETMETRICS_BIND": "0.0.0.0"}


def test_checkaccess_and_serve_refuse_in_one_line(open_env: dict[str, str], tmp_path) -> None:
    for command in (["checkaccess"], ["serve", "--port", "1"]):
        result = manage(open_env, *command)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", OPEN + "\n")
    empty = {**unmigrated_env(tmp_path / "empty.sqlite3"), "NETMETRICS_AUTH": "required"}
    if "DATABASE_URL" in empty:
        name = urlsplit(empty["DATABASE_URL"]).path[1:]
        cause = 'relation "auth_user" does not exist'
    else:
        name, cause = empty["NETMETRICS_DB"], "no such table: auth_user"
    result = manage(empty, "checkaccess")
    assert (result.returncode, result.stderr) == (
        1,
        f"netmetrics: cannot read the users from the database {name}: {cause} "
        "(run 'make setup' for migrations)\n",
    )


def test_serve_refuses_a_bad_port() -> None:
    with pytest.raises(CommandError, match=r"^--port 0: expected 1-65535$"):
        call_command("serve", "--port", "0")


def test_make_run_refuses_before_it_starts_anything(open_env: dict[str, str]) -> None:
    """run.sh as `make run BIND=0.0.0.0` calls it: the one line, exit 1, nothing left running
    (the sampler would need root: the check comes first, so it never starts)."""
    run = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=ROOT,
        env={**open_env, "BIND": "0.0.0.0", "IFACE": "lo", "PORT": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=60)
    finally:
        survivors = subprocess.run(["pgrep", "-g", str(run.pid)], capture_output=True, text=True)
        if survivors.stdout:
            os.killpg(run.pid, signal.SIGKILL)
    assert (run.returncode, stdout, stderr) == (1, "", OPEN + "\n")
    assert survivors.stdout == "", "run.sh left processes behind"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def fetch(
    server: WebServer, path: str, headers: dict[str, str], body: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, str]:
    """A GET, or a form POST with body: the status, the headers and the text."""
    return exchange(
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), path, headers, body
    )


@pytest.mark.parametrize("trusted", [False, True])
def test_only_a_trusted_proxy_names_the_client_and_the_scheme(tmp_path: Path, trusted) -> None:
    env = migrated_env(tmp_path / "nm.sqlite3")
    env.pop("NETMETRICS_AUTH", None)  # loopback-open, as the default bind makes it
    env.update(NETMETRICS_BIND="127.0.0.1", NETMETRICS_TRUSTED_PROXY="1" if trusted else "0")
    made = manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        *("createsuperuser", "--no-input", "--username", "alice", "--email", "a@example.com"),
    )
    assert made.returncode == 0, made.stderr
    server = WebServer(env, tmp_path / "web.log", serve=True)
    try:
        server.wait_healthy()
        # A client on loopback needs no login; through a proxy that is not declared trusted,
        # every client must log in, whatever address it claims.
        status = fetch(server, "/api/interfaces", {"X-Forwarded-For": "127.0.0.1"})[0]
        assert status == (200 if trusted else 401)
        # A failed password counts against the address the proxy names only if it is trusted.
        status = fetch(
            server,
            "/api/interfaces",
            {"X-Forwarded-For": "203.0.113.7", "Authorization": basic("alice", "nope")},
        )[0]
        assert status == 401
        assert db_rows(env, "SELECT ip_address, username FROM axes_accessattempt") == [
            ("203.0.113.7" if trusted else "127.0.0.1", "alice")
        ]
        # Its X-Forwarded-Proto makes the request HTTPS: the login's cookies are Secure.
        proxied = {"X-Forwarded-For": "203.0.113.8", "X-Forwarded-Proto": "https"}
        status, headers, page = fetch(server, "/login/", proxied)
        assert status == 200
        csrf = cookies(headers)["csrftoken"]
        assert csrf["secure"] == (True if trusted else "")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        scheme = "https" if trusted else "http"
        status, headers, _ = fetch(
            server,
            "/login/",
            {
                **proxied,
                "Cookie": f"csrftoken={csrf.value}",
                "Origin": f"{scheme}://127.0.0.1:{server.port}",
            },
            body={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
        )
        assert (status, headers["Location"]) == (302, "/")
        jar = cookies(headers)
        assert sorted(jar) == ["csrftoken", "sessionid"]
        assert {name: jar[name]["secure"] for name in jar} == {
            "csrftoken": True if trusted else "",
            "sessionid": True if trusted else "",
        }
    finally:
        server.stop()
