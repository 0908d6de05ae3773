"""scripts/central.sh (`sudo make central`): the centre of a fleet, on this host's PostgreSQL.

As root, with PostgreSQL and Redis installed (CI): a database and roles of the test's own names
on the running cluster, with ALLOW empty, so that its listen_addresses and pg_hba.conf, which
the rest of the suite uses, stay as they are; Redis from a scratch configuration on a port of its
own (not the suite's). Then, on a scratch cluster of its own, which it may restart, ALLOW: the
roles reach it through this host's address, and ALLOW=none closes that again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from netmetrics.scram import matches, verifier
from tests.conftest import _skip_unless_possible
from tests.processes import ROOT, wait_for

SCRIPT = ROOT / "scripts" / "central.sh"
# The environment of the script and of the hosts' manage.py: none of the suite's own database.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}


def test_scram_verifiers_are_postgresql_s() -> None:
    # Made by PostgreSQL 15 (CREATE ROLE ... PASSWORD 'correct horse battery staple').
    made = (
        "SCRAM-SHA-256$4096:qMc86No29MVOCZmT8py6Uw==$3ZUIfF2EzvOgcLqtrClg67oJ/0R2eElvzpNBDpCrszk="
        ":yO9dvGD59JR7z7KbkL7ulBCLlG6NP7e/tMl2mP+tHrQ="
    )
    assert matches("correct horse battery staple", made)
    assert not matches("correct horse battery stapler", made)
    mine = verifier("s3cret")
    assert matches("s3cret", mine) and mine != verifier("s3cret")  # a new salt each time
    assert not any(matches("s3cret", s) for s in ("", "md5" + "0" * 32, "SCRAM-SHA-256$x:y$z"))


# --- helpers ----------------------------------------------------------------------------------


def run_central(env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env={**CLEAN_ENV, **env}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def summary(out: str) -> str:
    """What every run prints, from its summary on: a run that changes nothing prints only this."""
    return out[out.index("central: PostgreSQL ") :]


def configuration(out: str) -> dict[str, dict[str, str]]:
    """The printed settings of each kind of host: {"sampler": {KEY: value}, "web": {...}}."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in out.splitlines():
        if line.startswith("# Each "):
            current = sections.setdefault(line.split()[2], {})
        elif current is not None and line and not line.startswith("#"):
            key, value = line.split("=", 1)
            current[key] = value
    return sections


def postgres(cluster: str, sql: str, database: str = "postgres") -> str:
    """sql's rows as psql -At prints them, run as the postgres superuser."""
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "--cluster", cluster, "-X", "-At",
         "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
        cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def manage(url: str, *args: str) -> str:
    """manage.py with DATABASE_URL=url, as a host runs it: its output, once it succeeded."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
        env={**CLEAN_ENV, "DATABASE_URL": url, "NETMETRICS_SECRET_KEY": "test"}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def denied(url: str, sql: str) -> bool:
    """Whether url's role may not run sql (which is rolled back if it may)."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(sql)
        except psycopg.errors.InsufficientPrivilege:
            return True
        finally:
            conn.rollback()
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_cluster() -> tuple[str, str]:
    """The first running cluster: VERSION/NAME and its port."""
    lines = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    version, name, port, _ = next(
        line.split(maxsplit=3)
        for line in lines.stdout.splitlines()
        if line.split()[3].startswith("online")
    )
    return f"{version}/{name}", port


@dataclass
class Centre:
    env: dict[str, str]  # central.sh's settings: the names, the secrets file, Redis's
    cluster: str
    db: str
    roles: tuple[str, str, str]  # owner, sampler, web
    redis_pidfile: Path

    def passwords(self) -> str:
        return postgres(
            self.cluster,
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ("
            + ", ".join(f"'{role}'" for role in self.roles)
            + ") ORDER BY rolname",
        )


def scratch_redis(directory: Path) -> tuple[Path, Path]:
    """A redis.conf of a port of its own, its files in directory: its path and its pidfile."""
    directory.chmod(0o755)
    shutil.chown(directory, "redis", "redis")
    pidfile = directory / "redis.pid"
    conf = directory / "redis.conf"
    conf.write_text(
        f"port {free_port()}\nbind 127.0.0.1\npidfile {pidfile}\ndir {directory}\n"
        f"logfile {directory}/redis.log\ndaemonize yes\nsave ''\nappendonly no\n"
    )
    return conf, pidfile


@pytest.fixture
def centre(requires_central) -> Iterator[Centre]:
    """central.sh's settings for a database and roles of this test's own on the running cluster,
    and a scratch Redis; all of it dropped afterwards."""
    cluster, _ = running_cluster()
    tag = f"nmcentral_{os.getpid()}"
    directory = Path(tempfile.mkdtemp(prefix="nmcentral-"))
    conf, pidfile = scratch_redis(directory)
    roles = (f"{tag}_owner", f"{tag}_sampler", f"{tag}_web")
    env = {
        "NETMETRICS_CENTRAL_DB": tag,
        "NETMETRICS_CENTRAL_OWNER": roles[0],
        "NETMETRICS_CENTRAL_SAMPLER": roles[1],
        "NETMETRICS_CENTRAL_WEB": roles[2],
        "NETMETRICS_CENTRAL_ENV": str(directory / "central.env"),
        "NETMETRICS_CENTRAL_CLUSTER": cluster,
        "NETMETRICS_CENTRAL_REDIS_CONF": str(conf),
    }
    try:
        yield Centre(env, cluster, tag, roles, pidfile)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            wait_for(lambda: not pidfile.exists(), 10, "the scratch Redis to stop")
        shutil.rmtree(directory)
        postgres(cluster, f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
        postgres(cluster, f"DROP ROLE IF EXISTS {', '.join(roles)}")


# What a sampler writes, through its own code, as the sampler's role: a run, samples with their
# rollups and a flow minute; then retention deletes them all.
SAMPLER_WRITES = """
from datetime import timedelta
from django.utils import timezone
from bpf.flows import FlowCounts, FlowKey, encode_key
from metrics.models import FlowMinute, Host, HourRollup, MinuteRollup, Sample, SamplerRun
from metrics.retention import prune
from metrics.sampler import Sampler
from tests.samples import counters

class Kernel:
    reads = 0
    def read(self):
        self.reads += 1
        n = self.reads
        return {"eth0": counters(rx_total_packets=10 * n, rx_total_bytes=1000 * n)}
    def harvest_flows(self):
        key = encode_key(FlowKey(17, "10.0.0.1", 53, "10.0.0.2", 40000))
        return {"eth0": {key: FlowCounts(1, 100, 1, 100)}}

run = SamplerRun.objects.create(host=Host.objects.local(), interface="eth0", mode="native",
                                egress=True, interval=1.0, pid=1, started_at=timezone.now())
sampler = Sampler(Kernel(), interval=1.0, flow_top=20)
sampler.watch(run)
assert sampler.tick() is not None and sampler.tick() is not None and sampler.flush()
tables = (Sample, MinuteRollup, HourRollup, FlowMinute)
stopped = SamplerRun.objects.get().stopped_at is not None
print("written", *(t.objects.count() for t in tables), stopped)
prune(run.series, timezone.now() + timedelta(days=1000))
print("pruned", *(t.objects.count() for t in tables))
"""

# What the web does as the web's role: a login (a session, the login limit's records), the
# admin, the API, and a token's use (its last use noted).
WEB_SERVES = """
from django.contrib.auth.models import User
from django.test import Client
from access.models import ApiToken
admin = User.objects.create_superuser("admin", "", "pw")
client = Client(HTTP_HOST="127.0.0.1")
assert client.post("/login/", {"username": "admin", "password": "wrong"}).status_code == 200
assert client.post("/login/", {"username": "admin", "password": "pw"}).status_code == 302
_, token = ApiToken.objects.issue(admin)
script = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {token}"})
assert ApiToken.objects.get().last_used_at is None
print(*(client.get(path).status_code for path in ("/admin/metrics/sample/", "/api/interfaces")),
      script.get("/api/interfaces").status_code, ApiToken.objects.get().last_used_at is not None)
"""


# --- the tests ---------------------------------------------------------------------------------


def test_central_makes_roles_that_can_do_their_jobs_and_no_more(centre: Centre) -> None:
    hba = postgres(centre.cluster, "SHOW hba_file")
    before = (Path(hba).read_bytes(), postgres(centre.cluster, "SHOW listen_addresses"))

    first = run_central(centre.env)
    assert f"creating database {centre.db}" in first and "migrations applied" in first
    printed = configuration(first)
    sampler_url = printed["sampler"]["DATABASE_URL"]
    web_url = printed["web"]["DATABASE_URL"]
    redis_url = printed["web"]["REDIS_URL"]
    assert urlsplit(sampler_url).username == centre.roles[1]
    assert urlsplit(web_url).username == centre.roles[2]
    assert urlsplit(sampler_url).hostname == "127.0.0.1"  # ALLOW empty: loopback only
    assert len(printed["web"]["NETMETRICS_SECRET_KEY"]) >= 50
    secrets = Path(centre.env["NETMETRICS_CENTRAL_ENV"])
    assert (secrets.stat().st_mode & 0o777, secrets.stat().st_uid) == (0o600, 0)

    # The hosts' `make install` runs migrate: with nothing to apply, each role may.
    for url in (sampler_url, web_url):
        assert "No migrations to apply" in manage(url, "migrate", "--no-input")

    assert manage(sampler_url, "shell", "-v", "0", "-c", SAMPLER_WRITES).split("\n")[:2] == [
        "written 3 1 1 1 True",
        "pruned 0 0 0 0",
    ]
    assert manage(web_url, "shell", "-v", "0", "-c", WEB_SERVES).strip() == "200 200 200 True"

    create = "CREATE TABLE central_probe (i int)"
    assert denied(sampler_url, create) and denied(web_url, create)
    assert denied(sampler_url, "SELECT count(*) FROM auth_user")
    assert denied(sampler_url, "SELECT count(*) FROM django_session")
    assert denied(web_url, "DELETE FROM metrics_sample")
    assert denied(web_url, "INSERT INTO metrics_samplerrun (interface) VALUES ('x')")
    assert not denied(web_url, "SELECT count(*) FROM metrics_sample")

    import redis

    assert redis.Redis.from_url(redis_url).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=urlsplit(redis_url).port or 0).ping()

    # Again: the same passwords, nothing changed or restarted, the same lines.
    passwords, mtime = centre.passwords(), secrets.stat().st_mtime_ns
    redis_pid = centre.redis_pidfile.read_text()
    second = run_central(centre.env)
    assert second == summary(first)
    assert (centre.passwords(), secrets.stat().st_mtime_ns) == (passwords, mtime)
    assert centre.redis_pidfile.read_text() == redis_pid

    # The running cluster's listening and pg_hba.conf are as they were; so is the suite's Redis.
    assert (Path(hba).read_bytes(), postgres(centre.cluster, "SHOW listen_addresses")) == before
    if os.environ.get("REDIS_URL"):
        assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping()


def host_address() -> str:
    """This host's address on its default route's interface: what central.sh prints by default."""
    route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True)
    words = route.stdout.split()
    if "dev" in words:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", words[words.index("dev") + 1], "scope",
             "global"], capture_output=True, text=True,
        )  # fmt: skip
        if out.stdout.split():
            return out.stdout.split()[3].split("/")[0]
    _skip_unless_possible("central", "no default route with an IPv4 address: ALLOW needs one")
    raise AssertionError  # not reached


@pytest.fixture
def scratch_cluster(requires_central) -> Iterator[tuple[str, str]]:
    """A PostgreSQL cluster of this test's own (VERSION/NAME, port), dropped afterwards."""
    version = running_cluster()[0].split("/")[0]
    name, port = f"nmcentral{os.getpid()}", str(free_port())
    subprocess.run(
        ["pg_createcluster", "--start", "-p", port, version, name], capture_output=True,
        check=True, timeout=120,
    )  # fmt: skip
    try:
        yield f"{version}/{name}", port
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], check=True, timeout=120)
        # What pg_dropcluster does not know: central.sh's conf.d file, if a failure left it.
        shutil.rmtree(f"/etc/postgresql/{version}/{name}", ignore_errors=True)


def reaches(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_allow_opens_the_roles_to_a_network_and_none_closes_it(scratch_cluster) -> None:
    cluster, port = scratch_cluster
    address = host_address()
    hba = Path(postgres(cluster, "SHOW hba_file"))
    directory = Path(tempfile.mkdtemp(prefix="nmcentral-"))
    env = {  # the default names: the cluster is the test's own
        "NETMETRICS_CENTRAL_CLUSTER": cluster,
        "NETMETRICS_CENTRAL_ENV": str(directory / "central.env"),
        "NETMETRICS_CENTRAL_REDIS": "0",
    }
    try:
        closed = configuration(run_central(env))["sampler"]["DATABASE_URL"]
        assert urlsplit(closed).hostname == "127.0.0.1" and reaches(closed)
        remote = closed.replace("@127.0.0.1:", f"@{address}:")
        assert not reaches(remote)  # listening on localhost only

        opened = run_central({**env, "ALLOW": f"{address}/32"})
        assert "restarting PostgreSQL" in opened
        printed = configuration(opened)
        assert printed["sampler"]["DATABASE_URL"] == remote
        assert reaches(remote) and reaches(printed["web"]["DATABASE_URL"])
        assert postgres(cluster, "SHOW listen_addresses") == "*"
        assert f"host    netmetrics    netmetrics_sampler,netmetrics_web    {address}/32" in (
            hba.read_text()
        )
        kept = dict(line.split("=", 1) for line in env_lines(directory / "central.env"))
        owner = f"postgres://netmetrics:{kept['OWNER_PASSWORD']}@{address}:{port}/netmetrics"
        assert not reaches(owner)  # the owner connects from this host only
        assert reaches(owner.replace(f"@{address}:", "@127.0.0.1:"))

        # ALLOW is remembered: a run without it changes nothing and restarts nothing.
        started = postgres(cluster, "SELECT pg_postmaster_start_time()")
        assert run_central(env) == summary(opened)
        assert postgres(cluster, "SELECT pg_postmaster_start_time()") == started

        closing = run_central({**env, "ALLOW": "none"})
        assert "loopback only" in closing and not reaches(remote) and reaches(closed)
        assert "netmetrics central" not in hba.read_text()
        assert postgres(cluster, "SHOW listen_addresses") == "localhost"
    finally:
        shutil.rmtree(directory)


def env_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
