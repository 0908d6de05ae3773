"""The kernel's flow table, through BPF_PROG_TEST_RUN: keys, exact counts, GSO, the LRU bound.

Every frame runs through an entry point of a program built with flows; a harvest must then
return exactly its flow (local is the host's side in both directions) with its packets and bytes
in the right direction, and leave the table empty.
"""

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether

from bpf.classes import DEFAULT_APP_PORTS
from bpf.flows import FlowCounts, FlowKey, decode_key, encode_key
from bpf.prog_test_run import TEST_RUN_IFINDEX, prog_test_run
from bpf.program import Program
from tests.test_bpf_program import sk_buff_ctx

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
# Frames as they cross the wire: from the remote end (rx) or from the host (tx).
HOST4, REMOTE4 = "192.0.2.1", "198.51.100.2"
HOST6, REMOTE6 = "2001:db8::1", "2001:db8::2"
UDP4 = FlowKey(17, HOST4, 53, REMOTE4, 40000)
TCP6 = FlowKey(6, HOST6, 443, REMOTE6, 50000)
ENTRIES = {"xdp": "rx", "tc-ingress": "rx", "tc-egress": "tx"}
SMALL_TABLE = 64


def wire(key: FlowKey, direction: str, payload: bytes = b"") -> bytes:
    """The frame of `key`'s flow going `direction` (rx: remote to local)."""
    v6 = ":" in key.local
    ends = (key.remote, key.local) if direction == "rx" else (key.local, key.remote)
    ports = (key.remote_port, key.local_port)
    if direction == "tx":
        ports = (key.local_port, key.remote_port)
    ip = IPv6(src=ends[0], dst=ends[1]) if v6 else IP(src=ends[0], dst=ends[1])
    transport = {6: TCP(flags="A"), 17: UDP()}[key.protocol]
    transport.sport, transport.dport = ports
    return bytes(ETH / ip / transport / payload)


def fd(program: Program, entry: str) -> int:
    return program.xdp_fd if entry == "xdp" else program.tc_fds[entry.removeprefix("tc-")]


def counts(direction: str, packets: int, nbytes: int) -> FlowCounts:
    return FlowCounts(**{f"{direction}_packets": packets, f"{direction}_bytes": nbytes})


@pytest.fixture(scope="module")
def program(requires_bpf: None) -> Iterator[Program]:
    prog = Program(DEFAULT_APP_PORTS, flow_table=1024)
    prog.add_interface(TEST_RUN_IFINDEX)
    yield prog
    prog.close()


@pytest.fixture
def flows(program: Program) -> Program:
    """The program with an empty table."""
    harvest(program)
    return program


def harvest(program: Program) -> dict[FlowKey, FlowCounts]:
    assert program.flows is not None
    harvested = program.flows.harvest()
    assert set(harvested) == {TEST_RUN_IFINDEX}
    return {decode_key(key): value for key, value in harvested[TEST_RUN_IFINDEX].items()}


def test_keys_round_trip() -> None:
    for key in (UDP4, TCP6, FlowKey(1, "10.0.0.1", 0, "10.0.0.2", 0)):
        assert decode_key(encode_key(key)) == key


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("key", [UDP4, TCP6], ids=["ipv4-udp", "ipv6-tcp"])
def test_a_frame_counts_in_its_flow_with_the_host_as_local(flows, entry, key) -> None:
    direction = ENTRIES[entry]
    data = wire(key, direction, b"x" * 100)
    for _ in range(3):
        prog_test_run(fd(flows, entry), data)
    assert harvest(flows) == {key: counts(direction, 3, 3 * len(data))}
    assert harvest(flows) == {}, "a harvest empties the table"


def test_both_directions_meet_in_one_entry(flows) -> None:
    prog_test_run(fd(flows, "xdp"), wire(UDP4, "rx", b"q" * 30))
    prog_test_run(fd(flows, "tc-egress"), wire(UDP4, "tx", b"a" * 200))
    prog_test_run(fd(flows, "tc-egress"), wire(UDP4, "tx", b"a" * 200))
    rx, tx = len(wire(UDP4, "rx", b"q" * 30)), len(wire(UDP4, "tx", b"a" * 200))
    assert harvest(flows) == {UDP4: (1, rx, 2, 2 * tx)}


@pytest.mark.parametrize("entry", ["tc-ingress", "tc-egress"])
def test_a_gso_aggregate_counts_its_wire_packets_in_its_flow(flows, entry) -> None:
    direction = ENTRIES[entry]
    data = wire(TCP6, direction, b"x" * 2880)
    headers = 14 + 40 + 20
    wire_len = len(data) + 2 * headers  # 3 segments of 960 bytes, each with its own headers
    ctx = sk_buff_ctx(gso_segs=3, wire_len=wire_len, gso_size=960)
    prog_test_run(fd(flows, entry), data, ctx=ctx)
    assert harvest(flows) == {TCP6: counts(direction, 3, wire_len)}


def test_flows_without_ports_and_frames_without_ip(flows) -> None:
    icmp = bytes(ETH / IP(src=REMOTE4, dst=HOST4) / ICMP())
    fragment = bytes(
        ETH / IPv6(src=REMOTE6, dst=HOST6) / IPv6ExtHdrFragment(offset=100, nh=17) / (b"f" * 64)
    )
    arp = bytes(ETH / ARP(psrc=REMOTE4, pdst=HOST4))
    for data in (icmp, fragment, arp):
        prog_test_run(flows.xdp_fd, data)
    assert harvest(flows) == {
        FlowKey(1, HOST4, 0, REMOTE4, 0): (1, len(icmp), 0, 0),
        # A non-first fragment has a protocol but no ports.
        FlowKey(17, HOST6, 0, REMOTE6, 0): (1, len(fragment), 0, 0),
    }


def test_a_full_table_evicts_flows_and_never_stops_the_totals(requires_bpf) -> None:
    program = Program(DEFAULT_APP_PORTS, flow_table=SMALL_TABLE)
    program.add_interface(TEST_RUN_IFINDEX)
    try:
        sent = 4 * SMALL_TABLE
        keys = [FlowKey(17, HOST4, 53, REMOTE4, 10000 + i) for i in range(sent)]
        frames = [wire(key, "rx") for key in keys]
        for data in frames:
            prog_test_run(program.xdp_fd, data)
        assert program.flows is not None
        got = harvest(program)
        assert 0 < len(got) <= SMALL_TABLE
        assert program.flows.dropped == {TEST_RUN_IFINDEX: sent - len(got)}
        assert keys[-1] in got, "the newest flow is the last to be evicted"
        assert set(got.values()) == {(1, len(frames[0]), 0, 0)}
        counts = program.read()[TEST_RUN_IFINDEX]
        assert counts["rx_total_packets"] == sent
        assert counts["rx_total_bytes"] == sum(len(f) for f in frames)
        program.add_interface(TEST_RUN_IFINDEX)
        assert program.flows.dropped == {}
    finally:
        program.close()


def test_without_flows_there_is_no_table(requires_bpf) -> None:
    program = Program(DEFAULT_APP_PORTS)
    try:
        assert program.flows is None
    finally:
        program.close()
