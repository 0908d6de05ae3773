"""`runsampler`'s order of work, with a stand-in for the kernel side: no root needed.

Preflight once, the database checked before the programs are built, the run written once they
are attached (with the mode they got), the loop until SIGTERM, and everything detached.
"""

import logging
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from bpf.attach import Attachable
from bpf.errors import PreflightError
from bpf.flows import FlowCounts
from bpf.loader import Counted
from metrics.links import Link
from metrics.management.commands import runsampler
from metrics.models import HOST_TOTAL, Host, Sample, SamplerRun
from metrics.sampler import Sampler
from tests.samples import counters

pytestmark = pytest.mark.django_db

COMMAND = "metrics.management.commands.runsampler"


class FakeCounter(Attachable):
    """TrafficCounter's interface, recording what the command does with it."""

    log: list[str] = []
    refuse: str | None = None  # a PreflightError message for add()

    def __init__(self, **options: object) -> None:
        self.egress = options["egress"]
        self.flow_table = options["flow_table"]
        self.counted: dict[str, Counted] = {}
        self.reads = 0

    def attach(self) -> None:
        self.log.append("compile")

    def add(self, iface: str) -> Counted:
        self.log.append(f"add {iface} (runs: {SamplerRun.objects.count()})")
        if self.refuse:
            raise PreflightError(self.refuse)
        self.counted[iface] = Counted(LINKS[iface].ifindex, "skb")
        return self.counted[iface]

    def token(self, iface: str | None) -> int:
        return 0  # no counters kept from an earlier sampler (tests/test_restarts.py has those)

    def set_token(self, iface: str | None, token: int) -> None:
        assert token

    def drop_others(self) -> None:
        """Nothing was kept from an earlier sampler."""

    def remove(self, iface: str) -> None:
        self.log.append(f"remove {iface}")
        del self.counted[iface]

    def detach(self) -> None:
        for iface in list(self.counted):
            self.remove(iface)
        self.log.append("detach")

    def read(self) -> dict[str, dict[str, int]]:
        self.reads += 1
        if self.reads == 2:  # after the first tick: stop, as systemd or Ctrl-C would
            os.kill(os.getpid(), signal.SIGTERM)
        n = self.reads
        return {
            iface: counters(rx_total_packets=3 * n * i, rx_total_bytes=300 * n * i)
            for i, iface in enumerate(self.counted, start=1)
        }

    def harvest_flows(self) -> dict[str, dict[bytes, FlowCounts]]:
        return {iface: {} for iface in self.counted}


LINKS = {
    name: Link(name, ifindex, up=True, loopback=False, master=None, lowers=(), kind="")
    for ifindex, name in enumerate(["veth7", "veth8"], start=7)
}


@pytest.fixture
def fake(monkeypatch, tmp_path) -> Iterator[type[FakeCounter]]:
    FakeCounter.log = []
    monkeypatch.setattr("bpf.iface_lock.LOCK_DIR", tmp_path)  # the host total's lock
    FakeCounter.refuse = None
    monkeypatch.setattr(f"{COMMAND}.TrafficCounter", FakeCounter)
    monkeypatch.setattr(f"{COMMAND}.preflight", lambda: FakeCounter.log.append("preflight"))
    monkeypatch.setattr(f"{COMMAND}.check_interface", lambda iface: None)
    monkeypatch.setattr(f"{COMMAND}.current_links", lambda: LINKS)
    monkeypatch.setattr("metrics.watcher.current_links", lambda: LINKS)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield FakeCounter
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_preflight_once_then_attach_then_the_run_with_the_mode_got(fake) -> None:
    call_command("runsampler", "--iface", "veth7", "--interval", "0.1", "--no-flows")
    assert fake.log == ["preflight", "compile", "add veth7 (runs: 0)", "remove veth7", "detach"]
    run = SamplerRun.objects.get()
    assert (run.interface, run.mode, run.egress, run.flow_table) == ("veth7", "skb", True, 0)
    assert run.stopped_at is not None
    # Two ticks (SIGTERM comes during the second) and the flush: every count read is stored.
    assert run.rx_total_packets == 9 and run.samples.count() == 3


def test_a_refused_attach_leaves_no_run_and_is_one_line(fake) -> None:
    fake.refuse = "cannot attach native XDP to veth7: Operation not supported"
    with pytest.raises(CommandError, match=r"^cannot attach native XDP to veth7"):
        call_command("runsampler", "--iface", "veth7", "--mode", "native")
    assert fake.log == ["preflight", "compile", "add veth7 (runs: 0)", "detach"]
    assert not SamplerRun.objects.exists()


def test_modes_are_the_loaders(fake) -> None:
    with pytest.raises(CommandError, match="invalid choice: 'xdp'"):
        call_command("runsampler", "--iface", "veth7", "--mode", "xdp")
    assert fake.log == []


def test_several_interfaces_and_their_total_in_one_transaction_each_tick(fake) -> None:
    """Two interfaces: a run each and the host total's, whose samples are their sum, tick by
    tick; all three are written by each tick, with one timestamp."""
    call_command("runsampler", "--iface", "veth7,veth8", "--interval", "0.1", "--no-flows")
    runs = {run.interface: run for run in SamplerRun.objects.all()}
    assert set(runs) == {"veth7", "veth8", HOST_TOTAL}
    assert runs[HOST_TOTAL].mode == "host" and all(r.stopped_at for r in runs.values())
    assert (runs[HOST_TOTAL].members, runs["veth7"].members) == (["veth7", "veth8"], [])
    # veth7 grows by 3 packets a read, veth8 by 6: two ticks and the flush.
    assert {name: run.rx_total_packets for name, run in runs.items()} == {
        "veth7": 9, "veth8": 18, HOST_TOTAL: 27,
    }  # fmt: skip
    for sample in runs[HOST_TOTAL].samples.all():
        parts = Sample.objects.filter(timestamp=sample.timestamp).exclude(interface=HOST_TOTAL)
        assert sample.rx_total_bytes == sum(p.rx_total_bytes for p in parts)
        assert parts.count() == 2


def test_a_selection_error_is_one_line(fake) -> None:
    with pytest.raises(CommandError, match=r"^interface names have at most 15 characters"):
        call_command("runsampler", "--iface", "a-very-long-name0")
    with pytest.raises(CommandError, match=r"^name interfaces with --iface"):
        call_command("runsampler")
    assert fake.log == []


def test_a_pattern_that_matches_nothing_waits_for_a_match(fake, caplog) -> None:
    """It says so in one line, attaches nothing, and samples on (the host total) until a link
    event brings a match."""
    caplog.set_level(logging.INFO, logger="netmetrics.sampler")
    call_command("runsampler", "--iface", "eth*", "--interval", "0.1", "--no-flows")
    assert "interfaces: 'eth*' chooses none yet: waiting for one" in caplog.messages
    assert "not counting veth7: not selected" in caplog.messages
    assert [entry for entry in fake.log if entry.startswith("add")] == []
    assert list(SamplerRun.objects.values_list("interface", flat=True)) == [HOST_TOTAL]


def test_a_spool_it_cannot_open_is_one_line(requires_postgres, fake, settings, tmp_path) -> None:
    """With a central database the sampler needs its spool before anything else."""
    (tmp_path / "file").touch()
    settings.NETMETRICS_SPOOL = tmp_path / "file" / "spool.sqlite3"  # a file, not a directory
    with pytest.raises(CommandError, match=r"^cannot open the spool .*/file/spool.sqlite3: "):
        call_command("runsampler", "--iface", "veth7")
    assert fake.log == ["preflight"]  # nothing built, nothing attached


def test_a_fleets_samplers_tick_and_prune_each_on_its_own_phase_and_slot() -> None:
    hosts = [Host(id=uuid.uuid5(uuid.NAMESPACE_DNS, f"host{i}.fleet")) for i in range(1000)]
    phases = [host.tick_phase(1.0) for host in hosts]
    slots = [host.prune_slot(Sampler.PRUNE_EVERY) for host in hosts]
    for spread in (Counter(int(phase * 10) for phase in phases), Counter(slots)):
        assert sorted(spread) == list(range(10))
        assert all(70 <= count <= 130 for count in spread.values()), spread  # 100 each, 3 sd
    # Independent of each other: a tenth of the phase has its hosts' prunes on every slot.
    assert len({slot for phase, slot in zip(phases, slots, strict=True) if phase < 0.1}) == 10
    assert Host(id=hosts[0].id).prune_slot(10) == slots[0]
    assert hosts[0].tick_phase(10.0) == pytest.approx(phases[0] * 10)  # a share of the interval
    assert Host(id=hosts[0].id).tick_phase(1.0) == phases[0]  # the same at every start

    before = time.time()
    boundary = runsampler._next_boundary(1.0, 0.25)
    assert (boundary - 0.25) == pytest.approx(round(boundary - 0.25))
    assert before < boundary <= time.time() + 1
