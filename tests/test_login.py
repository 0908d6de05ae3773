"""The login page, logging out from the dashboard, the limit on failed logins (per address and
per username, on the login pages and on HTTP basic auth), and Secure cookies over HTTPS."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from access import lockout
from tests.processes import ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
WRONG = "Please enter a correct username and password. Note that both fields may be case-sensitive."
LOCKED = "Too many failed logins from this address or for this username: try again in 15 minutes."


@pytest.fixture
def alice() -> User:
    return User.objects.create_superuser("alice", password=PASSWORD)


def log_in(client: Client, username: str, password: str, address: str, forwarded: str = ""):
    """POST /login/ from address, with an X-Forwarded-For header if `forwarded`."""
    return client.post(
        "/login/",
        {"username": username, "password": password},
        headers={"x-forwarded-for": forwarded} if forwarded else {},
        REMOTE_ADDR=address,
    )


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_the_login_page_has_its_form(client: Client) -> None:
    response = client.get("/login/?next=/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<form method="post" action="/login/">' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert '<input type="text" name="username"' in page
    assert '<input type="password" name="password"' in page
    assert '<input type="hidden" name="next" value="/api/docs/">' in page
    assert "login-error" not in page


def test_a_wrong_password_is_shown_and_a_good_one_goes_to_next(client: Client, alice) -> None:
    response = log_in(client, "alice", "nope", "10.0.0.1")
    assert response.status_code == 200
    error = re.search(r'<p class="login-error" role="alert">(.*?)</p>', response.content.decode())
    assert error is not None and error.group(1) == WRONG
    assert 'value="alice"' in response.content.decode()  # the username is kept
    response = client.post(
        "/login/",
        {"username": "alice", "password": PASSWORD, "next": "/api/docs/"},
        REMOTE_ADDR="10.0.0.1",
    )
    assert (response.status_code, response["Location"]) == (302, "/api/docs/")


def assert_locked(response) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    found = re.search(r'<p class="login-error" role="alert">(.*?)</p>', response.content.decode())
    assert found is not None and found.group(1) == LOCKED


def test_failures_from_one_address_lock_that_address(client: Client, alice) -> None:
    # Five usernames, one failure each: only the address reaches the limit. A forged
    # X-Forwarded-For changes nothing: the address is the connection's.
    statuses = [log_in(client, f"user{n}", "nope", "10.0.0.1", f"192.0.2.{n}") for n in range(5)]
    assert [response.status_code for response in statuses] == [200, 200, 200, 200, 429]
    assert_locked(statuses[-1])
    assert_locked(log_in(client, "alice", PASSWORD, "10.0.0.1"))  # another username, right
    assert_locked(log_in(client, "alice", PASSWORD, "10.0.0.1", "10.9.9.9"))
    assert log_in(client, "alice", PASSWORD, "10.0.0.2").status_code == 302
    assert_locked(Client().post("/login/", {"username": "alice", "password": PASSWORD},
                                REMOTE_ADDR="10.0.0.1"))  # fmt: skip


def test_failures_for_one_username_lock_that_username(client: Client, alice) -> None:
    User.objects.create_superuser("bob", password=PASSWORD)
    statuses = [log_in(client, "alice", "nope", f"10.0.1.{n}").status_code for n in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert_locked(log_in(client, "alice", PASSWORD, "10.0.1.99"))  # from a fresh address
    assert log_in(client, "bob", PASSWORD, "10.0.1.98").status_code == 302


def test_a_login_before_the_limit_works_and_clears_the_failures(client: Client, alice) -> None:
    for _ in range(2):
        statuses = [log_in(Client(), "alice", "nope", "10.0.2.1").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 200]
        assert log_in(client, "alice", PASSWORD, "10.0.2.1").status_code == 302


def test_the_admin_login_counts_too(client: Client, alice) -> None:
    def admin(password: str) -> int:
        return client.post(
            "/admin/login/?next=/admin/",
            {"username": "alice", "password": password},
            REMOTE_ADDR="10.0.3.1",
        ).status_code

    assert [admin("nope") for _ in range(5)] == [200, 200, 200, 200, 429]
    assert admin(PASSWORD) == 429
    assert_locked(log_in(client, "alice", PASSWORD, "10.0.3.2"))  # the username, everywhere


@pytest.mark.parametrize("path", ["/api/interfaces", "/metrics"])
def test_basic_auth_counts_and_a_locked_client_gets_json(
    client: Client, alice, settings, path: str
) -> None:
    settings.NETMETRICS_AUTH = "required"
    good = client.get(path, HTTP_AUTHORIZATION=basic("alice", PASSWORD), REMOTE_ADDR="10.0.4.1")
    assert good.status_code == 200
    statuses = [
        client.get(path, HTTP_AUTHORIZATION=basic(f"user{n}", "nope"), REMOTE_ADDR="10.0.4.1")
        for n in range(5)
    ]
    assert [response.status_code for response in statuses] == [401, 401, 401, 401, 429]
    assert statuses[0].json() == {"detail": "Invalid username/password."}
    locked = client.get(path, HTTP_AUTHORIZATION=basic("alice", PASSWORD), REMOTE_ADDR="10.0.4.1")
    assert locked.status_code == 429
    assert locked["Content-Type"] == "application/json"
    assert locked["Retry-After"] == "900"
    assert locked.json() == {"detail": LOCKED[0].lower() + LOCKED[1:-1]}
    # The same limit as the login page's.
    assert_locked(log_in(client, "alice", PASSWORD, "10.0.4.1"))


def test_the_dashboard_header_shows_the_user_and_logs_out(client: Client, alice) -> None:
    assert 'id="logout-form"' not in client.get("/").content.decode()  # loopback, no login
    client.force_login(alice)
    page = client.get("/").content.decode()
    form = re.search(r'<form id="logout-form".*?</form>', page, re.S)
    assert form is not None
    assert '<form id="logout-form" class="logout" method="post" action="/logout/">' in form[0]
    assert 'name="csrfmiddlewaretoken"' in form[0]
    assert re.search(r'<span id="user-name"[^>]*>alice</span>', form[0])
    assert '<button type="submit">Log out</button>' in form[0]
    response = client.post("/logout/")
    assert (response.status_code, response["Location"]) == (302, "/login/")
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("secure", [False, True])
def test_login_cookies_are_secure_over_https_only(alice, secure: bool) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/", secure=secure)
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/login/",
        {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token},
        secure=secure,
        headers={"referer": "https://testserver/login/"} if secure else {},
    )
    assert response.status_code == 302
    # The login sets a new session and rotates the CSRF token: both Secure, or neither.
    assert sorted(response.cookies) == ["csrftoken", "sessionid"]
    assert {name: response.cookies[name]["secure"] for name in response.cookies} == {
        "csrftoken": secure or "",
        "sessionid": secure or "",
    }


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(minutes=15), "15 minutes"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(seconds=90), "90 seconds"),
        (timedelta(days=2), "2 days"),
        (timedelta(seconds=1), "1 second"),
    ],
)
def test_the_cooloff_reads_in_its_largest_whole_unit(span: timedelta, text: str) -> None:
    assert lockout.cooloff_text(span) == text


def test_the_limit_comes_from_the_environment(tmp_path) -> None:
    def manage(**variables: str) -> subprocess.CompletedProcess[str]:
        code = (
            "from django.conf import settings as s; from access import lockout; "
            "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), lockout.message())"
        )
        return subprocess.run(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
            cwd=ROOT,
            env={**os.environ, "NETMETRICS_DB": str(tmp_path / "nm.sqlite3"), **variables},
            capture_output=True,
            text=True,
            timeout=60,
        )

    given = manage(NETMETRICS_LOGIN_FAILURES="3", NETMETRICS_LOGIN_COOLOFF="2h")
    assert given.stdout == (
        "3 7200.0 too many failed logins from this address or for this username: "
        "try again in 2 hours\n"
    )
    bad = manage(NETMETRICS_LOGIN_COOLOFF="soon")
    assert (bad.returncode, bad.stderr) == (
        1,
        "netmetrics: NETMETRICS_LOGIN_COOLOFF: 'soon' is not a duration: use a number and a unit "
        "(s, m, h, d), e.g. 5m, 24h, 7d\n",
    )
