"""README's "Behind a reverse proxy (TLS)": its nginx configuration and its netmetrics settings,
as written there but for the certificate (a self-signed one), the ports and IPv6, run in front
of a real `manage.py serve`: HTTPS logins get Secure cookies, the dashboard's WebSocket
upgrades through it with the session, and plain HTTP is sent to HTTPS."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import NGINX
from tests.processes import ROOT, WebServer, cookies, exchange, free_port, migrated_env, wait_for

NAME = "netmetrics.example.com"
PASSWORD = "correct horse battery"
SECTION = "### Behind a reverse proxy (TLS)"


def readme_example() -> tuple[str, dict[str, str]]:
    """The section's nginx configuration, and its settings (NAME=value lines)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    nginx = re.search(r"```nginx\n(.*?)```", section, re.S)
    shell = re.search(r"```sh\n(.*?)```", section, re.S)
    assert nginx and shell, "the section has an nginx and a sh block"
    settings = dict(
        line.split("#")[0].strip().split("=", 1) for line in shell[1].splitlines() if line
    )
    return nginx[1], settings


def replaced(text: str, old: str, new: str, count: int) -> str:
    assert text.count(old) == count, f"{old!r} is not in the README's example {count} times"
    return text.replace(old, new)


def site(config: str, *, https: int, http: int, upstream: int, cert: Path, key: Path) -> str:
    config = "\n".join(line for line in config.splitlines() if "[::]" not in line)
    config = replaced(config, "listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;", 1)
    config = replaced(config, "listen 80;", f"listen 127.0.0.1:{http};", 1)
    config = replaced(config, f"/etc/letsencrypt/live/{NAME}/fullchain.pem", str(cert), 1)
    config = replaced(config, f"/etc/letsencrypt/live/{NAME}/privkey.pem", str(key), 1)
    return replaced(config, "http://127.0.0.1:8000", f"http://127.0.0.1:{upstream}", 2)


def main_config(tmp: Path) -> str:
    """nginx.conf around the site: everything in tmp; responses are buffered in memory only
    (under root the workers run as nobody, who cannot write to tmp)."""
    return f"""
pid {tmp}/nginx.pid;
daemon off;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    proxy_max_temp_file_size 0;
    include {tmp}/site.conf;
}}
"""


def https_request(
    port: int, context: ssl.SSLContext, path: str, headers: dict[str, str], form: dict | None
) -> tuple[int, http.client.HTTPMessage, str]:
    """Through nginx, as a browser at https://NAME:port would ask."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    return exchange(conn, path, {"Host": f"{NAME}:{port}", **headers}, form)


def test_the_readme_nginx_example_proxies_https_and_the_websocket(
    requires_nginx, tmp_path: Path
) -> None:
    config, settings = readme_example()
    assert settings == {
        "NETMETRICS_BIND": "127.0.0.1",
        "NETMETRICS_TRUSTED_PROXY": "1",
        "NETMETRICS_ALLOWED_HOSTS": NAME,
    }
    env = migrated_env(tmp_path / "nm.sqlite3")
    env.update(settings)
    # The test's client is on this host, where loopback-open would let it in without a login:
    # everyone logs in. 127.0.0.1 for the readiness check, which goes around nginx.
    env.update(NETMETRICS_AUTH="required", NETMETRICS_ALLOWED_HOSTS=f"{NAME},127.0.0.1")
    made = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--no-input", "--username", "alice",
         "--email", "alice@example.com"],
        cwd=ROOT, env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    https, plain = free_port(), free_port()
    server = WebServer(env, tmp_path / "web.log", serve=True)
    (tmp_path / "site.conf").write_text(
        site(config, https=https, http=plain, upstream=server.port, cert=cert, key=key)
    )
    (tmp_path / "nginx.conf").write_text(main_config(tmp_path))
    nginx_args = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                  "-e", str(tmp_path / "error.log")]  # fmt: skip
    tested = subprocess.run([*nginx_args, "-t"], capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0, tested.stderr
    nginx = subprocess.Popen(nginx_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # http.client connects to 127.0.0.1; the WebSocket checks
    try:
        server.wait_healthy()

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", https)) == 0

        wait_for(listening, 10, "nginx")

        status, _, body = https_request(https, context, "/api/interfaces", {}, None)
        assert (status, json.loads(body)) == (401, {"detail": "Authentication credentials were not provided."})  # fmt: skip  # noqa: E501

        status, headers, page = https_request(https, context, "/login/", {}, None)
        assert status == 200
        csrf = cookies(headers)["csrftoken"]
        assert csrf["secure"] is True  # nginx's X-Forwarded-Proto: https
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        status, headers, _ = https_request(
            https,
            context,
            "/login/",
            {"Cookie": f"csrftoken={csrf.value}", "Origin": f"https://{NAME}:{https}"},
            {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
        )
        assert (status, headers["Location"]) == (302, "/")
        session = cookies(headers)["sessionid"]
        assert session["secure"] is True
        status, _, body = https_request(
            https, context, "/api/interfaces", {"Cookie": f"sessionid={session.value}"}, None
        )
        assert (status, json.loads(body)) == (200, [])

        from websockets.exceptions import ConnectionClosedError
        from websockets.sync.client import connect
        from websockets.typing import Origin

        # A bad interface name gets an error message and close code 4400 from the consumer:
        # proof that the upgrade went through nginx both ways, certificate checked by name.
        with connect(
            f"wss://{NAME}:{https}/ws/metrics/?iface={'x' * 16}",
            sock=socket.create_connection(("127.0.0.1", https), timeout=10),
            ssl=ssl.create_default_context(cafile=str(cert)),
            origin=Origin(f"https://{NAME}:{https}"),
            additional_headers={"Cookie": f"sessionid={session.value}"},
            proxy=None,
            open_timeout=10,
        ) as ws:
            message = json.loads(ws.recv(timeout=10))
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=10)
        assert message == {
            "type": "error",
            "detail": {"iface": ["Ensure this field has no more than 15 characters."]},
        }
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400

        conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
        conn.request("GET", "/login/", headers={"Host": NAME})
        response = conn.getresponse()
        assert (response.status, response.headers["Location"]) == (
            301,
            f"https://{NAME}/login/",
        )
        conn.close()
    finally:
        nginx.terminate()
        nginx.wait(10)
        server.stop()
