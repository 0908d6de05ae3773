"""Several interfaces in one sampler, for real: veth pairs into namespaces of the test's own, each
sent a different known amount, counted exactly each, and their host total their sum; a veth made
while the sampler runs is counted from its first packet, and its run stopped when it is deleted;
--all leaves container-style interfaces alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics.models import HOST_TOTAL
from tests.netns import VethPair, sh, veth_pair
from tests.processes import ROOT, Managed, db_rows, migrated_env, wait_for

ETH, IP, UDP = 14, 20, 8
PAYLOAD = 100
FRAME = ETH + IP + UDP + PAYLOAD
SENT = {1: 11, 2: 23, 3: 37}  # datagrams into each pair's host end

SEND = (
    "import socket, sys\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"for _ in range(int(sys.argv[2])): u.sendto(b'x' * {PAYLOAD}, (sys.argv[1], 9))"
)

API = textwrap.dedent(
    """
    import json, os
    from django.test import Client
    client = Client(HTTP_HOST="127.0.0.1")
    print(json.dumps({
        iface: client.get("/api/metrics/realtime", {"iface": iface}).json()["totals"]["rx"]
        for iface in os.environ["IFACES"].split(",")
    }))
    """
)


def send(pair: VethPair, count: int) -> None:
    """`count` UDP datagrams from the namespace into the host end (port 9: nobody listens; the
    host's ICMP answers are its egress, not counted here)."""
    sh(*pair.in_namespace(sys.executable, "-c", SEND, pair.host_ip, str(count)))


def runs(env: dict[str, str], sampler: Managed) -> dict[str, tuple]:
    """This sampler's runs by interface: (rx packets, rx bytes, stopped)."""
    rows = db_rows(
        env,
        "SELECT interface, rx_total_packets, rx_total_bytes, stopped_at IS NOT NULL "
        "FROM metrics_samplerrun WHERE pid = ?",
        sampler.pid,
    )
    return {row[0]: row[1:] for row in rows}


def api_totals(env: dict[str, str], *ifaces: str) -> dict[str, dict]:
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", API],
        cwd=ROOT,
        env={**env, "IFACES": ",".join(ifaces)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])  # after any warnings Django prints


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return migrated_env(tmp_path / "netmetrics.sqlite3")


@pytest.fixture
def pairs(requires_bpf) -> Iterator[dict[int, VethPair]]:
    with contextlib.ExitStack() as stack:
        yield {index: stack.enter_context(veth_pair(index=index)) for index in SENT}


def pattern(pairs: dict[int, VethPair]) -> str:
    """A pattern that matches the test's host ends (nmh<tag>x<index>) and nothing else."""
    return pairs[1].host_iface[:-1] + "*"


def start(env: dict[str, str], log: Path, *args: str) -> Managed:
    sampler = Managed(env, log, "runsampler", "--no-flows", "--no-tcp-health", *args)
    wait_for(
        lambda: not sampler.running() or HOST_TOTAL in runs(env, sampler), 60, "the sampler's runs"
    )
    assert sampler.running(), sampler.output()
    return sampler


def test_each_interface_exactly_and_the_total_their_sum(pairs, env, tmp_path) -> None:
    sampler = start(env, tmp_path / "sampler.log", "--iface", pattern(pairs))
    try:
        wait_for(lambda: len(runs(env, sampler)) == 4, 10, "a run per interface")
        for index, count in SENT.items():
            send(pairs[index], count)
        expected = {pairs[i].host_iface: (n, n * FRAME) for i, n in SENT.items()}
        total = (sum(SENT.values()), sum(SENT.values()) * FRAME)
        wait_for(
            lambda: (
                {k: v[:2] for k, v in runs(env, sampler).items()} == {**expected, HOST_TOTAL: total}
            ),
            10,
            "the counts in the runs",
        )
        output = sampler.output()
        assert f"interfaces: {pattern(pairs)!r} chooses " in output, output
        assert "not counting eth0: not selected" in output, output
        api = api_totals(env, *expected, HOST_TOTAL)
        for iface, (packets, nbytes) in {**expected, HOST_TOTAL: total}.items():
            assert (api[iface]["packets"], api[iface]["bytes"]) == (packets, nbytes), iface
    finally:
        assert sampler.stop() == 0, sampler.output()
    assert all(stopped for *_, stopped in runs(env, sampler).values())
    # Every tick wrote one sample of each, at one timestamp: the total's are their sums.
    sums = db_rows(
        env,
        "SELECT t.rx_total_bytes, SUM(s.rx_total_bytes), COUNT(s.id) FROM metrics_sample t "
        "JOIN metrics_sample s ON s.timestamp = t.timestamp AND s.interface != t.interface "
        "WHERE t.interface = ? AND t.run_id IN (SELECT id FROM metrics_samplerrun WHERE pid = ?) "
        "GROUP BY t.id",
        HOST_TOTAL,
        sampler.pid,
    )
    assert sums and all(total == parts and n == 3 for total, parts, n in sums), sums
    for pair in pairs.values():
        assert pair.attached() == ""


def test_a_veth_made_later_is_counted_from_its_first_packet_and_closed_when_deleted(
    pairs, env, tmp_path
) -> None:
    sampler = start(env, tmp_path / "sampler.log", "--iface", pattern(pairs))
    try:
        wait_for(lambda: len(runs(env, sampler)) == 4, 10, "a run per interface")
        with veth_pair(index=4) as late:
            wait_for(lambda: late.host_iface in runs(env, sampler), 2, "the new veth's run")
            wait_for(lambda: "netmetrics_tc" in late.filters("egress"), 2, "its filters")
            send(late, 17)
            wait_for(
                lambda: runs(env, sampler)[late.host_iface][:2] == (17, 17 * FRAME),
                5,
                "the new veth's counts",
            )
        wait_for(lambda: runs(env, sampler)[late.host_iface][2], 5, "its run to stop")
        assert runs(env, sampler)[late.host_iface][:2] == (17, 17 * FRAME)
        assert not Path(f"/run/netmetrics/{late.host_iface}.lock").exists()
        assert sampler.running(), sampler.output()
        assert f"stopped counting {late.host_iface}" in sampler.output()
    finally:
        assert sampler.stop() == 0, sampler.output()


def test_all_leaves_container_style_interfaces_alone(requires_bpf, env, tmp_path) -> None:
    """In a namespace of its own (so that --all sees only the test's interfaces): a veth pair
    named like a host's NIC and a container's, and a docker-style bridge."""
    ns = f"nmall{os.getpid() % 100000}"
    inside = ["ip", "netns", "exec", ns]
    sh("ip", "netns", "add", ns)
    try:
        sh(*inside, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "veth1a2b")
        sh(*inside, "ip", "link", "add", "docker0", "type", "bridge")
        for name in ("lo", "uplink0", "veth1a2b", "docker0"):
            sh(*inside, "ip", "link", "set", name, "up")
        log = tmp_path / "all.log"
        argv = [*inside, sys.executable, "manage.py", "runsampler", "--all", "--no-flows"]
        with log.open("w") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "sampling every" in log.read_text() or proc.poll() is not None, 60,
                     "the sampler to start")  # fmt: skip
            attached = sh(*inside, "tc", "filter", "show", "dev", "veth1a2b", "egress")
            attached += sh(*inside, "tc", "filter", "show", "dev", "docker0", "egress")
            counted = sh(*inside, "tc", "filter", "show", "dev", "uplink0", "egress")
        finally:
            proc.terminate()
            assert proc.wait(30) == 0, log.read_text()
        output = log.read_text()
        assert "not counting veth1a2b: excluded by --exclude 'veth*'" in output, output
        assert "not counting docker0: excluded by --exclude 'docker*'" in output, output
        assert "not counting lo: loopback" in output, output
        assert "chooses uplink0" in output, output
        assert attached == "" and "netmetrics_tc" in counted, (attached, counted)
    finally:
        sh("ip", "netns", "del", ns, check=False)
