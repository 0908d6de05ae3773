"""manage.py subprocesses against a scratch database: what the end-to-end tests and the benches
share (the sampler and the web server must run as the separate processes they are in use), a
WebSocket client of the live feed, and users who log in over HTTP."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import decimal
import email.message
import http.client
import http.cookiejar
import ipaddress
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


class ProcessFailed(Exception):
    """A manage.py subprocess failed; the message ends with the tail of its output."""


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll condition every 0.1 s until it returns something truthy; TimeoutError says what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def migrated_env(db: Path, *, sqlite: bool = False, keep: bool = False) -> dict[str, str]:
    """An environment for child processes on a fresh, migrated scratch database: the SQLite file
    db (NETMETRICS_DB), or under DATABASE_URL (unless `sqlite`) a new PostgreSQL database of
    its own on that server, copied from one migrated once per test process, and dropped when
    the process exits unless `keep` (a bench's --keep) or drop_database() drops it first."""
    env = {**os.environ, "NETMETRICS_DB": str(db), "PYTHONUNBUFFERED": "1"}
    url = env.pop("DATABASE_URL", "")
    if url and not sqlite:
        env["DATABASE_URL"] = _with_database(
            url, _scratch.create(url, template=_scratch.template(url), keep=keep)
        )
        return env
    migrate(env)
    return env


def drop_database(env: dict[str, str]) -> None:
    """Drop the scratch PostgreSQL database of a migrated_env now (it holds disk a bench wants
    back before its next part); nothing for SQLite or a kept database."""
    url = env.get("DATABASE_URL")
    if url:
        _scratch.drop(url)


def unmigrated_env(db: Path) -> dict[str, str]:
    """As migrated_env, but the database exists and has no tables: an empty SQLite file, or an
    empty PostgreSQL database."""
    env = {**os.environ, "NETMETRICS_DB": str(db), "PYTHONUNBUFFERED": "1"}
    url = env.pop("DATABASE_URL", "")
    if url:
        env["DATABASE_URL"] = _with_database(url, _scratch.create(url, template="template0"))
    else:
        db.touch()
    return env


def migrate(env: dict[str, str]) -> None:
    """manage.py migrate on the environment's database; ProcessFailed says why not."""
    manage_ok(env, "manage.py migrate", "migrate", "--no-input", "-v", "0")


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """manage.py args in the environment, its output captured."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def manage_ok(env: dict[str, str], what: str, *args: str) -> None:
    """manage.py args in the environment; ProcessFailed says `what` failed, and why."""
    result = manage(env, *args)
    if result.returncode != 0:
        raise ProcessFailed(f"{what} failed: {result.stderr.strip()[-500:]}")


def exchange(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str], form: dict | None = None
) -> tuple[int, http.client.HTTPMessage, str]:
    """A GET, or a form POST of form, on conn (closed after): the status, headers and text."""
    try:
        if form is None:
            conn.request("GET", path, headers=headers)
        else:
            posted = {"Content-Type": "application/x-www-form-urlencoded", **headers}
            conn.request("POST", path, body=urlencode(form), headers=posted)
        response = conn.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        conn.close()


def cookies(headers: http.client.HTTPMessage) -> SimpleCookie:
    """The cookies a response sets."""
    jar: SimpleCookie = SimpleCookie()
    for header in headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar


class _ScratchDatabases:
    """PostgreSQL databases made for one test process, each a copy of a template (CREATE
    DATABASE ... TEMPLATE: a file copy, much quicker than migrating), dropped when it exits."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []  # (server URL, database): dropped at exit
        self.templates: dict[str, str] = {}
        self.count = 0

    def template(self, url: str) -> str:
        if url not in self.templates:
            name = self.create(url, template="template0")
            migrate({**os.environ, "DATABASE_URL": _with_database(url, name)})
            self.templates[url] = name
        return self.templates[url]

    def create(self, url: str, *, template: str, keep: bool = False) -> str:
        """A new database on url's server, copied from template: its name. It is dropped when
        the process exits, unless `keep`."""
        import psycopg
        from psycopg import sql

        base = urlsplit(url).path.lstrip("/")
        name = f"{base[:30]}_scratch_{os.getpid()}_{self.count}"
        self.count += 1
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        if keep:
            return name
        if not self.made:
            atexit.register(self.drop_all)
        self.made.append((url, name))
        return name

    def drop(self, url: str) -> None:
        """Drop the database of url (a database's URL, as migrated_env gives) if this process
        made it to drop."""
        for made in self.made:
            if _with_database(*made) == url:
                self.made.remove(made)
                self._drop(*made)
                return

    def drop_all(self) -> None:
        for url, name in reversed(self.made):
            self._drop(url, name)
        self.made.clear()

    @staticmethod
    def _drop(url: str, name: str) -> None:
        import psycopg
        from psycopg import sql

        with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


_scratch = _ScratchDatabases()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def db_rows(env: dict[str, str], sql: str, *params: object) -> list[tuple]:
    """Rows of a query on the child processes' database, read directly (sqlite3, or psycopg
    under DATABASE_URL). Parameters are written ? as in sqlite3."""
    url = env.get("DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(sql.replace("?", "%s"), params).fetchall()
        return [tuple(_as_sqlite_gives(value) for value in row) for row in rows]
    with contextlib.closing(sqlite3.connect(env["NETMETRICS_DB"], timeout=5)) as db:
        return db.execute(sql, params).fetchall()


def _as_sqlite_gives(value: object) -> object:
    """A value as sqlite3 would return it: addresses (inet) as text, whole sums (numeric) as
    int."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Managed:
    """A manage.py subprocess with its output in a log file, for failure messages; in the
    network namespace `netns` if given (`ip netns exec` execs it: the pid is its own)."""

    def __init__(
        self, env: dict[str, str], log: Path, *args: str, netns: str | None = None
    ) -> None:
        self.log = log
        self.args = args
        prefix = ["ip", "netns", "exec", netns] if netns else []
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ensure_running(self) -> None:
        if not self.running():
            raise ProcessFailed(
                f"manage.py {self.args[0]} exited {self.proc.returncode}: {self.output()[-800:]}"
            )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send sig (unless it has exited) and return the exit code; SIGKILL after timeout."""
        if self.running():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(
                f"manage.py {self.args[0]} ignored signal {sig} for {timeout:g} s"
            ) from None


def free_port() -> int:
    """A free TCP port on 127.0.0.1, below the kernel's ephemeral range: a port bound and let go
    inside that range can be taken by any outgoing connection (a web server's Redis client)
    before the server under test binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randrange(low // 2, low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError(f"no free port found in {low // 2}-{low - 1}")


class WebServer(Managed):
    """`manage.py runserver` (daphne) on 127.0.0.1:port, a free port unless given; with `serve`,
    `manage.py serve` as make run and the web unit run it (on NETMETRICS_BIND, 127.0.0.1 by
    default)."""

    def __init__(
        self, env: dict[str, str], log: Path, port: int | None = None, *, serve: bool = False
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if serve:
            super().__init__(env, log, "serve", "--port", str(self.port))
        else:
            super().__init__(env, log, "runserver", "--noreload", f"127.0.0.1:{self.port}")

    def get(self, path: str, timeout: float = 5) -> str:
        """The body of a GET, or "" when it cannot be had."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.read().decode()
        except OSError:
            return ""

    def wait_healthy(self, timeout: float = 30) -> None:
        """Wait until /health answers OK; fail at once, with its output, if it exits."""

        def up() -> bool:
            self.ensure_running()
            return self.get("/health", timeout=1) == "OK"

        try:
            wait_for(up, timeout, f"the web server on {self.url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.output()[-800:]}") from None


def live_socket(
    port: int, query: str = "", *, cookie: str = "", origin: str = "http://127.0.0.1"
) -> ClientConnection:
    """A WebSocket connection to ws/metrics/ on 127.0.0.1:port (a context manager), from a page
    of `origin`, with a Cookie header if given (HttpSession.cookie_header)."""
    from websockets.sync.client import connect
    from websockets.typing import Origin

    headers = {"Cookie": cookie} if cookie else None
    url = f"ws://127.0.0.1:{port}/ws/metrics/{query}"
    return connect(url, origin=Origin(origin), additional_headers=headers, open_timeout=10)


@contextlib.contextmanager
def live_messages(
    port: int, iface: str, arrivals: list[float] | None = None
) -> Iterator[list[dict]]:
    """A real WebSocket client of ws/metrics/ on 127.0.0.1:port, reading on its own thread; the
    list fills until the block ends, and `arrivals` with each message's time.time() on
    arrival."""
    from websockets.exceptions import ConnectionClosed

    messages: list[dict] = []

    def read(ws: ClientConnection) -> None:
        try:
            while True:
                message = json.loads(ws.recv())
                if arrivals is not None:
                    arrivals.append(time.time())
                messages.append(message)
        except ConnectionClosed:
            return

    with live_socket(port, f"?iface={iface}") as ws:
        reader = threading.Thread(target=read, args=(ws,), daemon=True)
        reader.start()
        yield messages
    reader.join(5)


def create_user(env: dict[str, str], username: str, password: str, *, viewer: bool) -> None:
    """A user in the child processes' database, in the viewer group (access/rules.py) or not."""
    code = (
        "from django.contrib.auth.models import Group, User\n"
        "from access.rules import VIEWER_GROUP\n"
        f"user = User.objects.create_user({username!r}, password={password!r})\n"
        + ("user.groups.add(Group.objects.get(name=VIEWER_GROUP))\n" if viewer else "")
    )
    manage_ok(env, f"creating user {username}", "shell", "-c", code)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx itself is the answer: urlopen raises it as an HTTPError


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: email.message.Message
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class HttpSession:
    """An HTTP client of the server at url as a browser is: it keeps the cookies, and sends the
    CSRF cookie's token back with each POST. It follows no redirect: each answer is the
    server's own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects
        )

    def login(self, username: str, password: str) -> HttpSession:
        """Log in through the login form; ProcessFailed if that fails."""
        self.request("/login/")  # sets the CSRF cookie
        answer = self.request("/login/", {"username": username, "password": password})
        if answer.status != 302 or self.cookie("sessionid") is None:
            raise ProcessFailed(f"logging in as {username} answered {answer.status}")
        return self

    def logout(self) -> int:
        """POST /logout/ (as the header's button does): the status."""
        return self.request("/logout/", {}).status

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    @property
    def cookie_header(self) -> str:
        """The Cookie header a browser would send (for a WebSocket)."""
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)

    def request(self, path: str, form: dict[str, str] | None = None) -> Answer:
        """GET path, or POST the form if given."""
        data = None
        if form is not None:
            token = self.cookie("csrftoken") or ""
            data = urlencode({"csrfmiddlewaretoken": token, **form}).encode()
        try:
            with self.opener.open(self.url + path, data, timeout=10) as answer:
                return Answer(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as answer:
            return Answer(answer.code, answer.headers, answer.read())
