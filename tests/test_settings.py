"""Configuration from the environment, and files handed back to the user who ran sudo."""

import os
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from netmetrics import envconfig, sudo


def test_env_bool(monkeypatch) -> None:
    monkeypatch.setenv("NM_FLAG", "yes")
    assert envconfig.env_bool("NM_FLAG", default=False) is True
    monkeypatch.setenv("NM_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="NM_FLAG='maybe'"):
        envconfig.env_bool("NM_FLAG", default=False)
    monkeypatch.delenv("NM_FLAG")
    assert envconfig.env_bool("NM_FLAG", default=True) is True


def test_env_list_and_ports(monkeypatch) -> None:
    monkeypatch.setenv("NM_HOSTS", " a.example, b.example ,")
    assert envconfig.env_list("NM_HOSTS", default=[]) == ["a.example", "b.example"]
    monkeypatch.setenv("NM_PORTS", "80,8080")
    assert envconfig.env_ports("NM_PORTS", default=(1,)) == (80, 8080)
    for bad in ("http", "0", "70000"):
        monkeypatch.setenv("NM_PORTS", bad)
        with pytest.raises(ImproperlyConfigured, match="NM_PORTS"):
            envconfig.env_ports("NM_PORTS", default=(1,))


def test_env_int(monkeypatch) -> None:
    assert envconfig.env_int("NM_TOP", default=20, low=1, high=1000) == 20
    monkeypatch.setenv("NM_TOP", "50")
    assert envconfig.env_int("NM_TOP", default=20, low=1, high=1000) == 50
    for bad in ("0", "1001", "-5", "many"):
        monkeypatch.setenv("NM_TOP", bad)
        with pytest.raises(ImproperlyConfigured, match=f"NM_TOP='{bad}': expected a whole number"):
            envconfig.env_int("NM_TOP", default=20, low=1, high=1000)


def test_secret_key_is_made_once_and_kept(tmp_path: Path) -> None:
    key = envconfig.secret_key(tmp_path / "var")
    assert len(key) > 40
    assert envconfig.secret_key(tmp_path / "var") == key
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_files_go_to_the_sudo_user(tmp_path: Path, monkeypatch) -> None:
    chowned = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: chowned.append((path, uid, gid)))
    monkeypatch.setenv("SUDO_UID", "1000")
    monkeypatch.setenv("SUDO_GID", "1001")
    sudo.give_to_invoking_user(tmp_path / "db", tmp_path / "db-wal")
    assert chowned == [(tmp_path / "db", 1000, 1001), (tmp_path / "db-wal", 1000, 1001)]
    monkeypatch.delenv("SUDO_UID")
    sudo.give_to_invoking_user(tmp_path / "db")
    assert len(chowned) == 2


def test_settings_from_environment(tmp_path: Path) -> None:
    """A fresh interpreter, as `manage.py` would start it, with every variable set."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "NETMETRICS_DB": str(tmp_path / "nm.sqlite3"),
        "NETMETRICS_DEBUG": "1",
        "NETMETRICS_ALLOWED_HOSTS": "mon.example,127.0.0.1",
        "NETMETRICS_HTTP_PORTS": "80,8080",
    }
    for name in ("NETMETRICS_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    code = (
        "from django.conf import settings as s; print(s.DATABASES['default']['NAME'], s.DEBUG, "
        "s.ALLOWED_HOSTS, s.NETMETRICS_APP_PORTS['http'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**env, "DJANGO_SETTINGS_MODULE": "netmetrics.settings"},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout.split(" ", 1)
    assert out[0] == str(tmp_path / "nm.sqlite3")
    assert out[1].strip() == "True ['mon.example', '127.0.0.1'] (80, 8080)"
    assert (tmp_path / "secret_key").exists()


def test_database_and_redis_urls(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://nm:secret@db.example:5433/fleet")
    config = envconfig.env_database("DATABASE_URL")
    assert config is not None
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["HOST"], config["PORT"]) == (
        "fleet",
        "nm",
        "db.example",
        5433,
    )
    # A server that is gone fails within seconds; the URL's own parameters win.
    assert config["OPTIONS"]["connect_timeout"] == 5
    assert config["OPTIONS"]["tcp_user_timeout"] == 10_000
    # Statements bound and prepared by the server, unless the URL says otherwise (a pooler).
    assert config["OPTIONS"]["server_side_binding"] is True
    assert config["OPTIONS"]["prepare_threshold"] == 5
    monkeypatch.setenv(
        "DATABASE_URL",
        "postgres://nm@db.example/fleet?connect_timeout=2&server_side_binding=false",
    )
    given = envconfig.env_database("DATABASE_URL")
    assert given is not None and given["OPTIONS"]["connect_timeout"] == 2
    assert given["OPTIONS"]["server_side_binding"] is False
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/1")
    assert envconfig.env_redis("REDIS_URL") == "redis://127.0.0.1:6379/1"
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")
    assert envconfig.env_database("DATABASE_URL") is None
    assert envconfig.env_redis("REDIS_URL") is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://nm@db/fleet", "DATABASE_URL: mysql scheme: expected postgres://"),
        ("DATABASE_URL", "postgres://nm@db", "DATABASE_URL: no database name"),
        ("DATABASE_URL", "db.example", "DATABASE_URL: no scheme"),
        ("REDIS_URL", "http://cache:6379", "REDIS_URL: http scheme: expected redis://"),
        ("REDIS_URL", "redis://cache:port/0", "REDIS_URL: Port could not be cast"),
    ],
)
def test_a_bad_url_is_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    """As manage.py reports it: one line on stderr, no traceback, nor the password."""
    import subprocess
    import sys

    env = {**os.environ, "NETMETRICS_DB": str(tmp_path / "nm.sqlite3"), name: value}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"netmetrics: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
