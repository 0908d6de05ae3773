"""Restarts that lose nothing: the kernel's counters are pinned in bpffs and keep counting while
no sampler runs (bpf/pins.py), and the next sampler continues each run from its last sample.

Exact counts: datagrams sent from the pair's namespace into the host end while a sampler runs,
while it is being SIGKILLed, and while none runs, all end up in one run, once each, with the gap
as one longer sample. Other options replace what is pinned, and --detach removes everything.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpf.pins import kept_directory
from tests.netns import UDP_FRAME, VethPair, veth_pair
from tests.processes import ROOT, Managed, db_rows, migrated_env, wait_for

RUN = "SELECT id, pid, stopped_at, rx_total_packets, rx_total_bytes FROM metrics_samplerrun"


@pytest.fixture(scope="module")
def pair(requires_bpf) -> Iterator[VethPair]:
    with veth_pair(index=5) as pair:
        yield pair


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return migrated_env(tmp_path / "netmetrics.sqlite3")


def runs(env: dict[str, str], iface: str) -> list[tuple]:
    return db_rows(env, f"{RUN} WHERE interface = ? ORDER BY id", iface)


def start(env: dict[str, str], pair: VethPair, log: Path, *extra: str) -> Managed:
    """runsampler on the host end, once it says it is sampling."""
    sampler = Managed(env, log, "runsampler", "--iface", pair.host_iface, *extra)
    wait_for(lambda: not sampler.running() or "sampling every" in sampler.output(), 60, "start")
    sampler.ensure_running()
    return sampler


def counted(env: dict[str, str], pair: VethPair, packets: int) -> list[tuple]:
    """The runs, once the newest has counted `packets` datagrams."""
    wait_for(lambda: runs(env, pair.host_iface)[-1][3] == packets, 10, f"{packets} in the run")
    return runs(env, pair.host_iface)


def sample_sums(env: dict[str, str], run_id: int) -> tuple:
    """The run's samples' total of packets received, and the longest sample."""
    query = "SELECT SUM(rx_total_packets), MAX(elapsed) FROM metrics_sample WHERE run_id = ?"
    return db_rows(env, query, run_id)[0]


def test_sigkill_mid_stream_then_a_start_loses_and_doubles_nothing(pair, env, tmp_path) -> None:
    before = pair.host_counters()
    sampler = start(env, pair, tmp_path / "first.log")
    pair.send_udp(40)
    [(run_id, pid, _, _, _)] = counted(env, pair, 40)
    # 400 more, paced over about 2 s; the sampler is killed in the middle of them.
    sender = pair.sending_udp(400, 0.005)
    wait_for(lambda: runs(env, pair.host_iface)[-1][3] > 60, 10, "some of the 400 counted")
    sampler.stop(signal.SIGKILL)
    assert sender.wait(30) == 0
    assert "netmetrics_tc " in pair.filters("egress")  # still counting, with no sampler
    restarted = start(env, pair, tmp_path / "second.log")
    try:
        [(same_id, new_pid, stopped, _, nbytes)] = counted(env, pair, 440)
        assert (same_id, stopped) == (run_id, None) and new_pid == restarted.pid != pid
        assert "reusing the programs and counters pinned" in restarted.output()
        assert f"continuing run {run_id}" in restarted.output()
        assert nbytes == 440 * UDP_FRAME
        summed, longest = sample_sums(env, run_id)
        assert summed == 440 and longest > 1.5  # the gap: one longer sample, not a hole
        after = pair.host_counters()  # the kernel's own count of what crossed the interface
        assert after["rx_packets"] - before["rx_packets"] == 440
    finally:
        assert restarted.stop() == 0, restarted.output()
    assert pair.attached() == "" and not kept_directory().exists()


def test_a_persisted_stop_keeps_counting_until_the_next_start(pair, env, tmp_path) -> None:
    sampler = start(env, pair, tmp_path / "first.log", "--persist")
    pair.send_udp(10)
    counted(env, pair, 10)
    assert sampler.stop() == 0, sampler.output()
    assert "left the programs attached and counting" in sampler.output()
    [(run_id, _, stopped, _, _)] = runs(env, pair.host_iface)
    assert stopped is not None and "netmetrics_tcin" in pair.attached()
    pair.send_udp(5)  # no sampler runs: the kernel counts them into the pinned counters
    restarted = start(env, pair, tmp_path / "second.log")
    try:
        [(same_id, _, stopped, _, nbytes)] = counted(env, pair, 15)
        assert (same_id, stopped, nbytes) == (run_id, None, 15 * UDP_FRAME)
    finally:
        assert restarted.stop() == 0, restarted.output()
    assert pair.attached() == "" and not kept_directory().exists()


def detach(env: dict[str, str], spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "runsampler", "--detach", spec],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def prog_ids(pair: VethPair) -> list[str]:
    """The ids of the netmetrics programs attached to the pair's host end."""
    return re.findall(r" id (\d+) name netmetrics_", pair.attached())


def test_other_options_replace_the_pins_and_detach_removes_them(pair, env, tmp_path) -> None:
    sampler = start(env, pair, tmp_path / "first.log", "--persist")
    pair.send_udp(10)
    counted(env, pair, 10)
    assert sampler.stop() == 0
    first = prog_ids(pair)
    restarted = start(env, pair, tmp_path / "second.log", "--persist", "--no-flows")
    output = restarted.output()
    assert "replacing the programs pinned in" in output and "flow_table 16384 -> 0" in output
    pair.send_udp(3)
    [(old_id, *_), (new_id, _, _, _, _)] = counted(env, pair, 3)  # a new run, from zero
    assert new_id != old_id
    assert restarted.stop() == 0
    # One filter on each side, each a program of the new build.
    now = prog_ids(pair)
    assert len(now) == 2 and not set(now) & set(first), (first, now)
    assert pair.filters("ingress").count("handle 0x4e4d") == 1

    result = detach(env, pair.host_iface)
    assert result.returncode == 0, result.stderr
    assert pair.attached() == "" and not kept_directory().exists(), result.stderr
    assert "pins removed" in result.stderr


def test_detach_refuses_while_a_sampler_runs(pair, env, tmp_path) -> None:
    sampler = start(env, pair, tmp_path / "sampler.log")
    try:
        result = detach(env, "*")
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"a netmetrics sampler (pid {sampler.pid}) is running" in result.stderr
        assert "netmetrics_tc " in pair.filters("egress")
    finally:
        assert sampler.stop() == 0
    assert pair.attached() == ""


def test_a_second_sampler_counts_on_its_own_and_detach_all_leaves_it_alone(
    pair, env, tmp_path
) -> None:
    """One sampler holds the pinned set; a second one at the same time gets a private set,
    counts exactly all the same, and is left alone by `--detach '*'`."""
    with veth_pair(index=6) as other:
        first = start(env, pair, tmp_path / "first.log", "--persist")
        second = Managed(env, tmp_path / "second.log", "runsampler", "--iface", other.host_iface)
        try:
            wait_for(lambda: "sampling every" in second.output(), 60, "the second sampler")
            assert f"another sampler (pid {first.pid}) keeps the pinned counters" in (
                second.output()
            )
            other.send_udp(7)
            counted(env, other, 7)
            assert first.stop() == 0, first.output()
            result = detach(env, "*")
            assert result.returncode == 0, result.stderr
            assert f"left {other.host_iface} alone: another netmetrics sampler" in result.stderr
            assert pair.attached() == "" and not kept_directory().exists(), result.stderr
            assert "netmetrics_tc " in other.filters("egress")
            other.send_udp(4)
            counted(env, other, 11)
        finally:
            assert second.stop() == 0, second.output()
        assert other.attached() == ""
