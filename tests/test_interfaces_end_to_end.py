"""Several interfaces in one sampler, for real: veth pairs into namespaces of the test's own, each
sent a different known amount, counted exactly each, and their host total their sum; a bridge
counted once in the total, its ports on their own; a veth made while the sampler runs is counted
from its first packet, and its run stopped when it is deleted; one renamed, or set down and up,
is closed and opened again; --all leaves container-style interfaces alone; bad selections are
one line each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics.models import HOST_TOTAL
from tests.netns import UDP_FRAME, VethPair, bridge, restore_neighbours, sh, veth_pair
from tests.processes import ROOT, Managed, db_rows, migrated_env, wait_for

FRAME = UDP_FRAME
SENT = {1: 11, 2: 23, 3: 37}  # datagrams into each pair's host end

API = textwrap.dedent(
    """
    import json, os
    from django.test import Client
    client = Client(HTTP_HOST="127.0.0.1")
    print(json.dumps([client.get(path).json() for path in os.environ["PATHS"].split()]))
    """
)


def runs(env: dict[str, str], sampler: Managed) -> dict[str, tuple]:
    """This sampler's runs by interface: (rx packets, rx bytes, stopped)."""
    rows = db_rows(
        env,
        "SELECT interface, rx_total_packets, rx_total_bytes, stopped_at IS NOT NULL "
        "FROM metrics_samplerrun WHERE pid = ?",
        sampler.pid,
    )
    return {row[0]: row[1:] for row in rows}


def api(env: dict[str, str], *paths: str) -> list:
    """The API's answers to GET paths, from a process of its own on the sampler's database."""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", API],
        cwd=ROOT,
        env={**env, "PATHS": " ".join(paths)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])  # after any warnings Django prints


def api_totals(env: dict[str, str], *ifaces: str) -> dict[str, dict]:
    answers = api(env, *(f"/api/metrics/realtime?iface={iface}" for iface in ifaces))
    return {iface: answer["totals"]["rx"] for iface, answer in zip(ifaces, answers, strict=True)}


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


def start(env: dict[str, str], log: Path, *args: str, netns: str | None = None) -> Managed:
    sampler = Managed(env, log, "runsampler", "--no-flows", "--no-tcp-health", *args, netns=netns)
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
            pairs[index].send_udp(count)
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
            late.send_udp(17)
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


def test_a_bridge_is_counted_once_in_the_total_and_its_ports_on_their_own(
    requires_bpf, env, tmp_path
) -> None:
    """The address is on the bridge: what its ports receive for it, the bridge receives again.
    The total sums the bridge alone (the rule reads sysfs: master), so it counts each once."""
    with bridge(ports=2) as br:
        sent = {port.host_iface: count for port, count in zip(br.ports, (11, 23), strict=True)}
        sampler = start(env, tmp_path / "sampler.log", "--iface", ",".join([br.name, *sent]))
        try:
            wait_for(lambda: len(runs(env, sampler)) == 4, 10, "a run per interface")
            for port, count in zip(br.ports, sent.values(), strict=True):
                port.send_udp(count)
            both = sum(sent.values())
            expected = {
                **{name: (count, count * FRAME) for name, count in sent.items()},
                br.name: (both, both * FRAME),
                HOST_TOTAL: (both, both * FRAME),  # not 2 * both: the ports are left out
            }
            wait_for(
                lambda: {k: v[:2] for k, v in runs(env, sampler).items()} == expected,
                10,
                "the counts in the runs",
            )
            output = sampler.output()
            for name in sent:
                assert f"host total: leaves out {name} (" in output, output
            [listing] = api(env, "/api/interfaces")
            assert [(i["interface"], i["total"], i["members"]) for i in listing] == [
                (HOST_TOTAL, True, [br.name]),
                *((name, False, []) for name in sorted([br.name, *sent])),
            ]
        finally:
            assert sampler.stop() == 0, sampler.output()
        assert all(stopped for *_, stopped in runs(env, sampler).values())
        bridge_filters = sh("tc", "filter", "show", "dev", br.name, "ingress")
        assert bridge_filters == "" and all(port.attached() == "" for port in br.ports)


def renamed(pair: VethPair, name: str) -> VethPair:
    """The pair after its host end is set down, renamed and set up again, its neighbour back."""
    for dev, *change in ((pair.host_iface, "down"), (pair.host_iface, "name", name), (name, "up")):
        sh(*pair.on_host("ip", "link", "set", "dev", dev, *change))
    moved = dataclasses.replace(pair, host_iface=name)
    restore_neighbours(moved)
    return moved


def test_a_renamed_or_restarted_interface_is_closed_and_opened_again(
    requires_bpf, env, tmp_path
) -> None:
    """In a namespace of its own, under --all, a container-style name taken because --iface
    names it: renamed to a name --all takes, to one it excludes, and back."""
    tag = os.getpid() % 100000
    netns = f"nmren{tag}"
    sh("ip", "netns", "add", netns)
    try:
        with veth_pair(index=7, host_namespace=netns, host_iface=f"veth{tag}") as pair:
            sampler = start(env, tmp_path / "sampler.log", "--all", "--iface", pair.host_iface,
                            netns=netns)  # fmt: skip

            def history() -> list[tuple]:
                return db_rows(
                    env,
                    "SELECT interface, rx_total_packets, stopped_at IS NOT NULL "
                    "FROM metrics_samplerrun WHERE pid = ? AND interface != ? ORDER BY id",
                    sampler.pid,
                    HOST_TOTAL,
                )

            def counted(name: str, *runs: tuple) -> None:
                """Wait until the runs are these, the last (name's) counting; then send it 5."""
                wait_for(lambda: history() == [*runs, (name, 0, False)], 3, f"{name}'s run")
                host = dataclasses.replace(pair, host_iface=name)
                wait_for(lambda: "netmetrics_tc" in host.filters("egress"), 2, "its filters")
                pair.send_udp(5)
                wait_for(lambda: history()[-1] == (name, 5, False), 5, f"{name}'s count")

            try:
                counted(pair.host_iface)
                output = sampler.output()
                assert (
                    f"counting {pair.host_iface} although --exclude 'veth*' matches it: "
                    "--iface asks for it"
                ) in output, output
                up = renamed(pair, f"up{tag}")  # --all takes it: a new run
                counted(up.host_iface, (pair.host_iface, 5, True))
                hidden = renamed(up, f"vethq{tag}")  # excluded: closed, nothing left on it
                wait_for(lambda: history()[-1] == (up.host_iface, 5, True), 5, "its stop")
                assert hidden.attached() == "" and len(history()) == 2
                back = renamed(hidden, pair.host_iface)  # named again: a third run
                counted(back.host_iface, (pair.host_iface, 5, True), (up.host_iface, 5, True))
            finally:
                assert sampler.stop() == 0, sampler.output()
            assert all(stopped for *_, stopped in history()) and pair.attached() == ""
            assert runs(env, sampler)[HOST_TOTAL] == (15, 15 * FRAME, True)
    finally:
        sh("ip", "netns", "del", netns, check=False)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--iface", "fifteen-chars-0"),  # IFNAMSIZ - 1: a name, if not one of this host's
            "CommandError: unknown interface 'fifteen-chars-0'; known interfaces: ",
        ),
        (
            ("--iface", "sixteen-chars-00"),
            "CommandError: interface names have at most 15 characters (IFNAMSIZ): "
            "'sixteen-chars-00' has 16",
        ),
        (
            ("--iface", "nmmissing0,nmmissing1"),
            "CommandError: unknown interface 'nmmissing0'; known interfaces: ",
        ),
        (("--iface", "all"), "CommandError: 'all' is not an interface"),
    ],
)
def test_a_bad_selection_is_one_line(requires_bpf, env, args: tuple, line: str) -> None:
    """As the user sees it: the process exits 1 before it compiles, one line on stderr."""
    result = subprocess.run(
        [sys.executable, "manage.py", "runsampler", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (1, ""), result
    assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
