"""A fleet, for real: the samplers of several hosts (each in a network namespace of its own,
with its own host id) writing to one PostgreSQL; a central server that goes away under a
sampler while it counts known traffic; and a wrong password at start.

Every count is exact: the veth pairs carry only the datagrams a test sends (tests/netns.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from metrics.models import Host
from tests.netns import UDP_FRAME, VethPair, sh, veth_pair
from tests.processes import Managed, WebServer, db_rows, migrate, migrated_env, wait_for

TAG = os.getpid() % 100000
IFACE = f"nmfl{TAG}"  # every host's interface has this name, as every host has an eth0
SAMPLER = ("runsampler", "--no-flows", "--no-tcp-health")


@pytest.fixture
def central(requires_postgres, requires_bpf, tmp_path) -> dict[str, str]:
    """The environment of the central database: a scratch one on DATABASE_URL's server."""
    return migrated_env(tmp_path / "unused.sqlite3")


def host_env(central: dict[str, str], home: Path, name: str) -> dict[str, str]:
    """A host's sampler: its own id, name, local directory and spool; the central database."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **central,
        "NETMETRICS_HOST_ID": str(host_id(name)),
        "NETMETRICS_HOST_NAME": name,
        "NETMETRICS_DB": str(home / "netmetrics.sqlite3"),
        "NETMETRICS_SPOOL": str(home / "spool.sqlite3"),
    }


def host_id(name: str) -> uuid.UUID:
    """A host's id: fixed, so its tick phase is known (alpha 0.06 s, beta 0.74 s, gamma 0.25 s)."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.netmetrics.test")


def received(env: dict[str, str], host: str) -> tuple[int, int]:
    """Packets and bytes the host's samples of IFACE hold in the central database."""
    [(packets, octets)] = db_rows(
        env,
        "SELECT coalesce(sum(s.rx_total_packets), 0), coalesce(sum(s.rx_total_bytes), 0) "
        "FROM metrics_sample s JOIN metrics_host h ON h.id = s.host_id "
        "WHERE h.name = ? AND s.interface = ?",
        host,
        IFACE,
    )
    return packets, octets


def sample_count(env: dict[str, str], host: str) -> int:
    rows = db_rows(
        env,
        "SELECT count(*) FROM metrics_sample s JOIN metrics_host h ON h.id = s.host_id "
        "WHERE h.name = ?",
        host,
    )
    return rows[0][0]


def started(sampler: Managed, env: dict[str, str], host: str) -> Managed:
    """The sampler, once its first sample is in the central database."""
    wait_for(
        lambda: not sampler.running() or sample_count(env, host) > 0, 60, f"{host}'s first sample"
    )
    assert sampler.running(), sampler.output()
    return sampler


def test_three_hosts_write_their_own_exact_totals_to_one_database(central, tmp_path) -> None:
    sent = {"alpha": 7, "beta": 11, "gamma": 13}
    with contextlib.ExitStack() as stack:
        samplers: dict[str, Managed] = {}
        pairs: dict[str, VethPair] = {}
        for index, host in enumerate(sent):
            netns = f"nmfl{TAG}{host[0]}"
            sh("ip", "netns", "add", netns)
            stack.callback(sh, "ip", "netns", "del", netns, check=False)
            pairs[host] = stack.enter_context(
                veth_pair(index=20 + index, host_namespace=netns, host_iface=IFACE)
            )
            env = host_env(central, tmp_path / host, host)
            log = tmp_path / f"{host}.log"
            samplers[host] = Managed(env, log, *SAMPLER, "--iface", IFACE, netns=netns)
            stack.callback(samplers[host].stop, signal.SIGKILL)
        for host, sampler in samplers.items():
            started(sampler, central, host)
        for host, count in sent.items():
            pairs[host].send_udp(count)
        for host, count in sent.items():

            def arrived(host: str = host, count: int = count) -> bool:
                return received(central, host) == (count, count * UDP_FRAME)

            wait_for(arrived, 10, f"{host}'s datagrams")
        for sampler in samplers.values():
            assert sampler.stop() == 0, sampler.output()

    minutes = db_rows(
        central,
        "SELECT h.name, sum(m.rx_total_packets) FROM metrics_minuterollup m "
        "JOIN metrics_host h ON h.id = m.host_id WHERE m.interface = ? GROUP BY h.name",
        IFACE,
    )
    assert dict(minutes) == sent  # one interface name, three hosts: never added together
    for host in sent:  # each ticks on its own phase of the second, not all on the whole second
        phase = Host(id=host_id(host)).tick_phase(1.0)
        stamps = db_rows(
            central,
            "SELECT s.timestamp FROM metrics_sample s JOIN metrics_host h ON h.id = s.host_id "
            "WHERE h.name = ?",
            host,
        )
        late = sorted((ts.timestamp() - phase) % 1.0 for (ts,) in stamps)
        assert late[len(late) // 2] < 0.15, (host, phase, late)
        assert f"sampling every 1s at +{phase:.3f}s" in samplers[host].output()
    web = WebServer(central, tmp_path / "web.log")
    try:
        web.wait_healthy()
        hosts = json.loads(web.get("/api/hosts"))
        assert sorted((h["name"], h["interfaces"], h["status"]) for h in hosts) == [
            (host, [IFACE], "stopped") for host in sorted(sent)
        ]
        for host, count in sent.items():
            realtime = json.loads(web.get(f"/api/metrics/realtime?host={host}&iface={IFACE}"))
            assert realtime["host_name"] == host
            assert realtime["totals"]["rx"]["packets"] == count
            assert realtime["totals"]["rx"]["bytes"] == count * UDP_FRAME
    finally:
        web.stop()


@dataclass
class PrivateCluster:
    """A PostgreSQL server of the test's own, on a Unix socket only: stopping it stops nothing
    the rest of the suite uses."""

    bindir: Path
    home: Path

    @property
    def url(self) -> str:
        return f"postgres://postgres@{quote(str(self.home), safe='')}:5499/netmetrics"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D",
             str(self.home / "data"), "-l", str(self.home / "log"), "-w", *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        self.ctl("-o", f"-k {self.home} -c listen_addresses='' -p 5499", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not installed:
        pytest.fail("no PostgreSQL server binaries (apt-get install postgresql)", pytrace=False)
    home = Path(tempfile.mkdtemp(prefix="nmpg"))
    home.chmod(0o755)
    shutil.chown(home, "postgres", "postgres")
    cluster = PrivateCluster(installed[-1].parent, home)
    try:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(cluster.bindir / "initdb"), "-D",
             str(home / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        cluster.start()
        try:
            maintenance = urlunsplit(urlsplit(cluster.url)._replace(path="/postgres"))
            db_rows({"DATABASE_URL": maintenance}, "SELECT 1")  # it answers
            import psycopg

            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute("CREATE DATABASE netmetrics")
            yield cluster
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair(index=24) as pair:
        yield pair


def test_the_centre_going_away_loses_nothing_and_counts_nothing_twice(
    requires_postgres, pair, tmp_path
) -> None:
    with private_cluster() as cluster:
        env = host_env({**os.environ, "DATABASE_URL": cluster.url}, tmp_path / "h", "outage")
        env["PYTHONUNBUFFERED"] = "1"
        migrate(env)
        sampler = Managed(env, tmp_path / "sampler.log", *SAMPLER, "--iface", pair.host_iface)
        try:
            started(sampler, env, "outage")
            pair.send_udp(20)
            wait_for(lambda: received_on(env, pair) == 20, 10, "the first 20")
            cluster.stop()
            pair.send_udp(15)
            wait_for(lambda: "spooling to" in sampler.output(), 10, "the sampler to spool")
            pair.send_udp(10)
            wait_for(lambda: spooled(env) >= 3, 10, "three spooled ticks")
            cluster.start()
            pair.send_udp(5)
            wait_for(lambda: received_on(env, pair) == 50, 60, "all 50 in the database")
            wait_for(lambda: "caught up" in sampler.output(), 30, "the spool written")
            assert sampler.stop() == 0, sampler.output()
        finally:
            sampler.stop(signal.SIGKILL)
        rows = db_rows(
            env,
            "SELECT start, timestamp, elapsed, rx_total_packets, rx_total_bytes "
            "FROM metrics_sample WHERE interface = ? ORDER BY start",
            pair.host_iface,
        )
        [(run_packets, run_bytes, measured)] = db_rows(
            env,
            "SELECT rx_total_packets, rx_total_bytes, measured_seconds FROM metrics_samplerrun "
            "WHERE interface = ?",
            pair.host_iface,
        )
        [(minute_packets,)] = db_rows(
            env,
            "SELECT sum(rx_total_packets) FROM metrics_minuterollup WHERE interface = ?",
            pair.host_iface,
        )
    assert (run_packets, run_bytes) == (50, 50 * UDP_FRAME)
    assert sum(r[3] for r in rows) == minute_packets == 50
    assert sum(r[4] for r in rows) == 50 * UDP_FRAME
    # Tick after tick, through the outage: each sample starts where the last one ended, none
    # twice, and the run measured exactly the time they cover.
    for before, after in itertools.pairwise(rows):
        assert abs((after[0] - before[1]).total_seconds()) < 0.01, (before, after)
    assert sum(r[2] for r in rows) == pytest.approx(measured)
    assert max(r[2] for r in rows) < 3  # no sample swallowed the outage
    output = sampler.output()
    assert "Traceback" not in output, output


def received_on(env: dict[str, str], pair: VethPair) -> int:
    rows = db_rows(
        env,
        "SELECT coalesce(sum(rx_total_packets), 0) FROM metrics_sample WHERE interface = ?",
        pair.host_iface,
    )
    return rows[0][0]


def spooled(env: dict[str, str]) -> int:
    """Ticks in the host's spool; 0 before the sampler has made it."""
    path = Path(env["NETMETRICS_SPOOL"])
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        try:
            return db.execute("SELECT count(*) FROM tick").fetchone()[0]
        except sqlite3.OperationalError:  # made, but not its table yet
            return 0


def test_a_wrong_password_at_start_is_one_line_and_the_sampler_counts_into_its_spool(
    central, pair, tmp_path
) -> None:
    parts = urlsplit(central["DATABASE_URL"])
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:wrong@{parts.hostname}:"
                                             f"{parts.port}"))  # fmt: skip
    env = host_env({**central, "DATABASE_URL": wrong}, tmp_path / "h", "spooler")
    sampler = Managed(env, tmp_path / "wrong.log", *SAMPLER, "--iface", pair.host_iface)
    try:
        wait_for(lambda: spooled(env) >= 2, 60, "ticks in the spool")
        pair.send_udp(9)
        wait_for(lambda: spooled(env) >= 4, 10, "more ticks in the spool")
        assert sampler.stop() == 0, sampler.output()  # its last interval is spooled too
    finally:
        sampler.stop(signal.SIGKILL)
    output = sampler.output()
    [line] = [line for line in output.splitlines() if "password authentication failed" in line]
    assert "counting into the spool" in line and "check DATABASE_URL" in line, line
    assert "Traceback" not in output, output
    assert sample_count(central, "spooler") == 0

    # With the right password, the next start writes the spool first: every datagram, once.
    env["DATABASE_URL"] = central["DATABASE_URL"]
    again = Managed(env, tmp_path / "right.log", *SAMPLER, "--iface", pair.host_iface)
    try:
        wait_for(lambda: received_on(central, pair) == 9, 60, "the spooled datagrams")
        assert again.stop() == 0, again.output()
    finally:
        again.stop(signal.SIGKILL)
    assert received_on(central, pair) == 9
    assert spooled(env) == 0
    [(stopped,)] = db_rows(
        central,
        "SELECT count(*) FROM metrics_samplerrun r JOIN metrics_host h ON h.id = r.host_id "
        "WHERE h.name = 'spooler' AND r.stopped_at IS NOT NULL",
    )
    assert stopped == 2  # the run counted while spooling, and the one after it
