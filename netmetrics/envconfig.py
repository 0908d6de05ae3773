"""Reading netmetrics' configuration from the environment."""

import contextlib
import hashlib
import hmac
import os
import secrets
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from metrics.durations import parse_duration
from netmetrics.sudo import give_to_invoking_user

POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")
# libpq's: a central server that is gone must fail a connect or a query within seconds, not
# after TCP's minutes of retries, so that the sampler turns to its spool and keeps ticking.
POSTGRES_TIMEOUTS = {
    "connect_timeout": 5,  # seconds
    "keepalives_idle": 10,  # seconds of silence before the first probe
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # milliseconds a sent query may stay unacknowledged
}
# Parameters bound by the server, and statements run 5 times on a connection prepared by
# psycopg: a sampler's tick is the same dozen statements every second, which PostgreSQL then
# parses and plans once instead of at every tick (0.8 instead of 2.3 ms of its CPU a tick,
# bench/fleet). A pooler in transaction mode must keep prepared statements (PgBouncer 1.21+,
# max_prepared_statements), or the URL turns this off: ?server_side_binding=false.
POSTGRES_BINDING = {"server_side_binding": True, "prepare_threshold": 5}


def env_bool(name: str, *, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: use 1/true/yes or 0/false/no")


def env_choice(name: str, choices: Sequence[str], *, default: str) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value


def env_list(name: str, *, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or default


def env_ports(name: str, *, default: Sequence[int]) -> tuple[int, ...]:
    items = env_list(name, default=[])
    if not items:
        return tuple(default)
    try:
        ports = tuple(int(item) for item in items)
    except ValueError:
        ports = ()
    if not ports or not all(0 < port < 65536 for port in ports):
        raise ImproperlyConfigured(
            f"{name}={os.environ[name]!r}: expected ports 1-65535, comma-separated"
        )
    return ports


def env_int(name: str, *, default: int, low: int, high: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number {low}-{high}")
    return int(value)


def env_duration(name: str, *, default: str) -> timedelta:
    value = os.environ.get(name, "").strip() or default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def env_time_zone(name: str) -> str:
    """An IANA zone name (Europe/Paris); default the server's own zone (its /etc/localtime),
    else UTC."""
    value = os.environ.get(name, "").strip() or local_time_zone()
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name}={value!r}: not a time zone; use an IANA name such as Europe/Paris or UTC"
        ) from None
    return value


def local_time_zone() -> str:
    """The zone /etc/localtime links to (zoneinfo/Europe/Paris), else /etc/timezone's, else UTC."""
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    with contextlib.suppress(OSError):
        return Path("/etc/timezone").read_text().strip() or "UTC"
    return "UTC"


def env_database(name: str) -> dict[str, Any] | None:
    """Django's database settings from a PostgreSQL URL in the variable; None when unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    scheme = urlsplit(value).scheme
    if scheme not in POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"{name}: {scheme or 'no'} scheme: expected postgres://USER:PASSWORD@HOST:PORT/NAME"
        )
    try:
        config = dict(dj_database_url.parse(value))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}: no database name: postgres://USER@HOST:PORT/NAME")
    # Parameters the URL gives (?connect_timeout=...) win over these defaults.
    options: dict[str, Any] = {**POSTGRES_TIMEOUTS, **POSTGRES_BINDING}
    options.update(cast("dict[str, Any]", config.get("OPTIONS") or {}))
    config["OPTIONS"] = options
    return config


def env_redis(name: str) -> str | None:
    """A redis:// (or rediss://, unix://) URL from the variable, or None when it is unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ImproperlyConfigured(
            f"{name}: {parts.scheme or 'no'} scheme: expected redis://[:PASSWORD@]HOST:PORT/DB"
        )
    try:
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return value


def secret_key(directory: Path) -> str:
    """The key kept in directory/secret_key, made on first use so sessions survive restarts."""
    return kept_value(
        directory / "secret_key", lambda: secrets.token_urlsafe(50), "NETMETRICS_SECRET_KEY"
    )


# netmetrics' application id: a host's id is derived from the machine's id with it, as systemd's
# sd_id128_get_machine_app_specific() does, so that the machine id itself is not published.
APPLICATION_ID = uuid.UUID("6f1c4f0e-8a7b-4d6e-9a43-2f5d0c9e7b21")
MACHINE_ID = Path("/etc/machine-id")


def host_id(name: str, directory: Path) -> uuid.UUID:
    """This host's id in a fleet: the variable if set; else derived from /etc/machine-id (made
    once when the OS was installed: it survives reboots, renames and reinstalls of netmetrics);
    else one generated once and kept in directory/host_id."""
    value = os.environ.get(name, "").strip()
    if value:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}={value!r}: expected a UUID such as {uuid.uuid4()}"
            ) from None
    try:
        machine = bytes.fromhex(MACHINE_ID.read_text().strip())
    except (OSError, ValueError):
        machine = b""
    if len(machine) == 16:
        digest = hmac.new(machine, APPLICATION_ID.bytes, hashlib.sha256).digest()
        return uuid.UUID(bytes=digest[:16], version=4)
    return uuid.UUID(kept_value(directory / "host_id", lambda: str(uuid.uuid4()), name))


def kept_value(path: Path, make: Callable[[], str], variable: str) -> str:
    """The value kept in the file at path, made (and kept) on first use; `variable` is the
    environment variable that would set it instead."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except PermissionError:
        raise ImproperlyConfigured(
            f"cannot read {path} (made by another user, e.g. root): set {variable}, "
            f"or give the file to this user (sudo chown $USER {path})"
        ) from None
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    give_to_invoking_user(directory)
    value = make()
    # O_EXCL: when two processes start at once, the second one reads the first one's value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value)
    give_to_invoking_user(path)
    return value
