"""`runsampler`'s order of work, with a stand-in for the kernel side: no root needed.

Preflight once, the database checked before the programs are built, the run written once they
are attached (with the mode they got), the loop until SIGTERM, and everything detached.
"""

import os
import signal
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from bpf.attach import Attachable
from bpf.errors import PreflightError
from metrics.models import SamplerRun
from tests.samples import counters

pytestmark = pytest.mark.django_db

COMMAND = "metrics.management.commands.runsampler"


class FakeCounter(Attachable):
    """TrafficCounter's interface, recording what the command does with it."""

    log: list[str] = []
    refuse: str | None = None  # a PreflightError message for attach()

    def __init__(self, iface: str, **options: object) -> None:
        self.iface = iface
        self.egress = options["egress"]
        self.flow_table = options["flow_table"]
        self.attached_mode: str | None = None
        self.reads = 0

    def attach(self) -> str:
        self.log.append(f"attach (runs: {SamplerRun.objects.count()})")
        if self.refuse:
            raise PreflightError(self.refuse)
        self.attached_mode = "skb"
        return self.attached_mode

    def detach(self) -> None:
        self.log.append("detach")
        self.attached_mode = None

    def read(self) -> dict[str, int]:
        self.reads += 1
        if self.reads == 2:  # after the first tick: stop, as systemd or Ctrl-C would
            os.kill(os.getpid(), signal.SIGTERM)
        return counters(rx_total_packets=3 * self.reads, rx_total_bytes=300 * self.reads)


@pytest.fixture
def fake(monkeypatch) -> Iterator[type[FakeCounter]]:
    FakeCounter.log = []
    FakeCounter.refuse = None
    monkeypatch.setattr(f"{COMMAND}.TrafficCounter", FakeCounter)
    monkeypatch.setattr(f"{COMMAND}.preflight", lambda iface: FakeCounter.log.append("preflight"))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield FakeCounter
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_preflight_once_then_attach_then_the_run_with_the_mode_got(fake) -> None:
    call_command("runsampler", "--iface", "veth7", "--interval", "0.1", "--no-flows")
    assert fake.log == ["preflight", "attach (runs: 0)", "detach"]
    run = SamplerRun.objects.get()
    assert (run.interface, run.mode, run.egress, run.flow_table) == ("veth7", "skb", True, 0)
    assert run.stopped_at is not None
    # Two ticks (SIGTERM comes during the second) and the flush: every count read is stored.
    assert run.rx_total_packets == 9 and run.samples.count() == 3


def test_a_refused_attach_leaves_no_run_and_is_one_line(fake) -> None:
    fake.refuse = "cannot attach native XDP to veth7: Operation not supported"
    with pytest.raises(CommandError, match=r"^cannot attach native XDP to veth7"):
        call_command("runsampler", "--iface", "veth7", "--mode", "native")
    assert fake.log == ["preflight", "attach (runs: 0)"]
    assert not SamplerRun.objects.exists()


def test_modes_are_the_loaders(fake) -> None:
    with pytest.raises(CommandError, match="invalid choice: 'xdp'"):
        call_command("runsampler", "--iface", "veth7", "--mode", "xdp")
    assert fake.log == []
