"""Packet-by-packet classification of the netmetrics programs, through BPF_PROG_TEST_RUN.

Every frame runs through the three entry points: XDP and the TC ingress filter (count rx), the
TC egress filter (counts tx). Each run must leave the frame alone (XDP_PASS, TC_ACT_UNSPEC) and
change exactly the expected counters: packets by one and bytes by the frame's length for each
expected class, in one direction only. GSO aggregates count as the wire packets they stand for.
"""

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from bpf.build import counting_cflags
from bpf.classes import CLASSES, COUNTER_NAMES, DEFAULT_APP_PORTS, TCP_FLAG_CLASSES, counter_name
from bpf.prog_test_run import TEST_RUN_IFINDEX, prog_test_run
from bpf.program import Program, app_port_masks

XDP_PASS = 2
TC_ACT_UNSPEC = 0xFFFFFFFF  # -1 as the u32 the test run reports

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tcp(**fields: Any) -> TCP:
    """A TCP header with ACK alone, as most segments are; scapy's default would be a SYN."""
    return TCP(**{"flags": "A", **fields})


def v4(**fields: Any) -> IP:
    return IP(src="192.0.2.1", dst="198.51.100.2", **fields)


def v6(**fields: Any) -> IPv6:
    return IPv6(src="2001:db8::1", dst="2001:db8::2", **fields)


V4 = v4()
V6 = v6()
# Bytes that read as ports 53 -> 53 where a transport header would start: a frame that has no
# transport header must not be taken for DNS because of them.
PORTS_53 = Raw(struct.pack("!HH", 53, 53) + b"\0" * 16)


def frame(pkt: Packet | bytes, cut: int | None = None) -> bytes:
    data = bytes(pkt)
    return data if cut is None else data[:cut]


# (id, frame, classes besides total)
CASES: list[tuple[str, bytes, set[str]]] = [
    ("ipv4-tcp-80", frame(ETH / V4 / tcp(sport=40000, dport=80)), {"ipv4", "tcp", "http"}),
    # Connection events, by flags.
    ("tcp-syn", frame(ETH / V4 / tcp(dport=443, flags="S")), {"ipv4", "tcp", "https", "syn"}),
    ("tcp-synack", frame(ETH / V6 / tcp(sport=80, flags="SA")), {"ipv6", "tcp", "http", "synack"}),
    ("tcp-rst", frame(ETH / V4 / tcp(dport=22, flags="R")), {"ipv4", "tcp", "rst"}),
    ("tcp-rst-ack", frame(ETH / V4 / tcp(sport=80, flags="RA")), {"ipv4", "tcp", "http", "rst"}),
    ("tcp-fin-ack", frame(ETH / V4 / tcp(dport=80, flags="FA")), {"ipv4", "tcp", "http", "fin"}),
    (
        "tcp-fin-psh-ack",
        frame(ETH / V6 / tcp(dport=5000, flags="FPA") / b"bye"),
        {"ipv6", "tcp", "fin"},
    ),
    ("tcp-syn-fin", frame(ETH / V4 / tcp(dport=22, flags="SF")), {"ipv4", "tcp", "syn", "fin"}),
    ("ipv4-tcp-443", frame(ETH / V4 / tcp(sport=40000, dport=443)), {"ipv4", "tcp", "https"}),
    ("ipv4-tcp-from-80", frame(ETH / V4 / tcp(sport=80, dport=40000)), {"ipv4", "tcp", "http"}),
    (
        "ipv4-tcp-443-large",
        frame(ETH / V4 / tcp(dport=443) / (b"x" * 1400)),
        {"ipv4", "tcp", "https"},
    ),
    ("ipv4-tcp-other-port", frame(ETH / V4 / tcp(sport=40000, dport=22)), {"ipv4", "tcp"}),
    ("ipv4-udp-53", frame(ETH / V4 / UDP(sport=40000, dport=53)), {"ipv4", "udp", "dns"}),
    ("ipv4-udp-from-53", frame(ETH / V4 / UDP(sport=53, dport=40000)), {"ipv4", "udp", "dns"}),
    ("ipv4-tcp-53", frame(ETH / V4 / tcp(sport=40000, dport=53)), {"ipv4", "tcp", "dns"}),
    # http and https are TCP only (APP_PROTOCOLS): QUIC on 443 is udp, not https.
    ("ipv4-udp-443", frame(ETH / V4 / UDP(sport=40000, dport=443)), {"ipv4", "udp"}),
    ("ipv4-icmp", frame(ETH / V4 / ICMP()), {"ipv4", "icmp"}),
    (
        "ipv4-gre",
        frame(ETH / v4(proto=47) / PORTS_53),
        {"ipv4", "other"},
    ),
    (
        "ipv4-options",
        frame(ETH / v4(options=[IPOption_RR()]) / tcp(sport=40000, dport=80)),
        {"ipv4", "tcp", "http"},
    ),
    (
        "ipv4-first-fragment",
        frame(ETH / v4(flags="MF") / UDP(sport=40000, dport=53) / (b"q" * 64)),
        {"ipv4", "udp", "dns"},
    ),
    (
        "ipv4-non-first-fragment",
        frame(ETH / v4(proto=17, frag=100) / PORTS_53),
        {"ipv4", "udp"},
    ),
    ("ipv6-tcp-80", frame(ETH / V6 / tcp(sport=40000, dport=80)), {"ipv6", "tcp", "http"}),
    ("ipv6-tcp-443", frame(ETH / V6 / tcp(sport=40000, dport=443)), {"ipv6", "tcp", "https"}),
    ("ipv6-tcp-from-443", frame(ETH / V6 / tcp(sport=443, dport=40000)), {"ipv6", "tcp", "https"}),
    ("ipv6-udp-53", frame(ETH / V6 / UDP(sport=40000, dport=53)), {"ipv6", "udp", "dns"}),
    ("ipv6-icmpv6", frame(ETH / V6 / ICMPv6EchoRequest()), {"ipv6", "icmp"}),
    # ICMP's number means nothing in IPv6, ICMPv6's nothing in IPv4.
    (
        "ipv6-proto-1",
        frame(ETH / v6(nh=1) / ICMP()),
        {"ipv6", "other"},
    ),
    (
        "ipv4-proto-58",
        frame(ETH / v4(proto=58) / PORTS_53),
        {"ipv4", "other"},
    ),
    (
        "ipv6-hop-by-hop-dest-opts",
        frame(ETH / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / tcp(sport=40000, dport=443)),
        {"ipv6", "tcp", "https"},
    ),
    (
        "ipv6-routing",
        frame(
            ETH
            / V6
            / IPv6ExtHdrRouting(addresses=["2001:db8::3", "2001:db8::4"])
            / UDP(sport=40000, dport=53)
        ),
        {"ipv6", "udp", "dns"},
    ),
    (
        "ipv6-first-fragment",
        frame(
            ETH / V6 / IPv6ExtHdrFragment(offset=0, m=1) / UDP(sport=40000, dport=53) / (b"q" * 64)
        ),
        {"ipv6", "udp", "dns"},
    ),
    (
        "ipv6-non-first-fragment",
        frame(ETH / V6 / IPv6ExtHdrFragment(offset=10, nh=17) / PORTS_53),
        {"ipv6", "udp"},
    ),
    (
        "ipv6-four-ext-headers",
        frame(
            ETH
            / V6
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrRouting()
            / IPv6ExtHdrFragment()
            / IPv6ExtHdrDestOpt()
            / tcp(sport=40000, dport=80)
        ),
        {"ipv6", "tcp", "http"},
    ),
    # Past the parser's bound of four extension headers the transport is unknown.
    (
        "ipv6-five-ext-headers",
        frame(
            ETH
            / V6
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / tcp(sport=40000, dport=80)
        ),
        {"ipv6", "other"},
    ),
    ("arp", frame(ETH / ARP(psrc="192.0.2.1", pdst="192.0.2.2")), {"other"}),
    (
        "vlan",
        frame(ETH / Dot1Q(vlan=10) / V4 / tcp(sport=40000, dport=443)),
        {"ipv4", "tcp", "https"},
    ),
    ("vlan-arp", frame(ETH / Dot1Q(vlan=10) / ARP(psrc="192.0.2.1", pdst="192.0.2.2")), {"other"}),
    (
        "qinq",
        frame(ETH / Dot1AD(vlan=100) / Dot1Q(vlan=10) / V6 / UDP(sport=40000, dport=53)),
        {"ipv6", "udp", "dns"},
    ),
    # A third tag is past the parser's bound of two.
    (
        "three-vlan-tags",
        frame(ETH / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / V4 / ICMP()),
        {"other"},
    ),
    ("cut-vlan-tag", frame(ETH / Dot1Q(vlan=10) / V4, cut=16), {"other"}),
    ("cut-ipv4-header", frame(ETH / V4 / tcp(dport=80), cut=14 + 10), {"other"}),
    (
        "cut-ipv4-options",
        frame(
            ETH / v4(options=[IPOption_RR()]) / tcp(dport=80),
            cut=14 + 22,
        ),
        {"other"},
    ),
    (
        "ipv4-bad-ihl",
        frame(ETH / v4(ihl=4) / tcp(dport=80)),
        {"other"},
    ),
    (
        "ipv4-ethertype-version-6",
        bytes(ETH)[:12] + b"\x08\x00" + bytes(V6 / tcp(dport=80)),
        {"other"},
    ),
    ("cut-ipv6-header", frame(ETH / V6 / tcp(dport=80), cut=14 + 39), {"other"}),
    (
        "vlan-cut-ipv4-header",
        frame(ETH / Dot1Q(vlan=10) / V4 / tcp(dport=80), cut=18 + 10),
        {"other"},
    ),
    (
        "vlan-cut-ipv6-header",
        frame(ETH / Dot1Q(vlan=10) / V6 / tcp(dport=80), cut=18 + 39),
        {"other"},
    ),
    (
        "cut-ipv6-ext-header",
        frame(ETH / V6 / IPv6ExtHdrHopByHop() / tcp(dport=80), cut=14 + 41),
        {"ipv6", "other"},
    ),
    # The transport class comes from the IP header; the application class needs both ports.
    (
        "cut-tcp-before-ports-end",
        frame(ETH / V4 / tcp(sport=40000, dport=80), cut=14 + 20 + 3),
        {"ipv4", "tcp"},
    ),
    (
        "cut-tcp-after-ports",
        frame(ETH / V4 / tcp(sport=40000, dport=80), cut=14 + 20 + 4),
        {"ipv4", "tcp", "http"},
    ),
    (
        "cut-udp-header",
        frame(ETH / V6 / UDP(sport=40000, dport=53), cut=14 + 40 + 2),
        {"ipv6", "udp"},
    ),
    ("garbage", b"\xde\xad\xbe\xef" * 16, {"other"}),
    ("minimal-zero-frame", bytes(14), {"other"}),
]
# The kernel's test run refuses to build an skb of EtherType IPv4/IPv6 shorter than the fixed IP
# header (EINVAL), so these run on XDP only; their VLAN-tagged twins cover the TC programs.
XDP_ONLY = {"cut-ipv4-header", "cut-ipv6-header"}
# Entry point -> the direction it counts, and the return value that lets the frame go.
ENTRY_POINTS = {
    "xdp": ("rx", XDP_PASS),
    "tc-ingress": ("rx", TC_ACT_UNSPEC),
    "tc-egress": ("tx", TC_ACT_UNSPEC),
}
RUNS = [
    pytest.param(entry, data, classes, id=f"{case_id}-{entry}")
    for case_id, data, classes in CASES
    for entry in ENTRY_POINTS
    if entry == "xdp" or case_id not in XDP_ONLY
]


@pytest.fixture(scope="module")
def program(requires_bpf: None) -> Iterator[Program]:
    prog = Program(DEFAULT_APP_PORTS)
    prog.add_interface(TEST_RUN_IFINDEX)
    yield prog
    prog.close()


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in COUNTER_NAMES}


def expected(direction: str, classes: set[str], packets: int, nbytes: int) -> dict[str, int]:
    counts = dict.fromkeys(COUNTER_NAMES, 0)
    for cls in {"total", *classes}:
        counts[counter_name(direction, cls, "packets")] = packets
        counts[counter_name(direction, cls, "bytes")] = nbytes
    return counts


def run(program: Program, entry: str, data: bytes, ctx: bytes | None = None) -> dict[str, int]:
    """Run one entry point on data; check it lets the frame go; the counter deltas."""
    before = program.read()[TEST_RUN_IFINDEX]
    fd = program.xdp_fd if entry == "xdp" else program.tc_fds[entry.removeprefix("tc-")]
    retval, _ = prog_test_run(fd, data, ctx=ctx)
    assert retval == ENTRY_POINTS[entry][1]
    return delta(before, program.read()[TEST_RUN_IFINDEX])


def test_cases_use_only_known_classes() -> None:
    for case_id, _, classes in CASES:
        assert classes <= set(CLASSES), case_id


@pytest.mark.parametrize(("entry", "data", "classes"), RUNS)
def test_classification(program: Program, entry: str, data: bytes, classes: set[str]) -> None:
    direction = ENTRY_POINTS[entry][0]
    assert run(program, entry, data) == expected(direction, classes, 1, len(data))


def sk_buff_ctx(gso_segs: int = 0, wire_len: int = 0, gso_size: int = 0) -> bytes:
    """A struct __sk_buff for the test run, up to gso_size; only the GSO fields and wire_len
    set (UAPI offsets: wire_len 160, gso_segs 164, gso_size 176)."""
    ctx = bytearray(180)
    struct.pack_into("=II", ctx, 160, wire_len, gso_segs)
    struct.pack_into("=I", ctx, 176, gso_size)
    return bytes(ctx)


def test_tc_egress_counts_gso_skb_as_its_wire_packets(program: Program) -> None:
    data = frame(ETH / V4 / tcp(sport=40000, dport=443) / (b"x" * 2896))
    headers = 14 + 20 + 20
    wire_len = len(data) + 2 * headers  # 3 segments of 1448 bytes, each with its own headers
    got = run(program, "tc-egress", data, ctx=sk_buff_ctx(gso_segs=3, wire_len=wire_len))
    assert got == expected("tx", {"ipv4", "tcp", "https"}, 3, wire_len)


def test_tc_counts_non_gso_skb_once(program: Program) -> None:
    data = frame(ETH / V6 / UDP(sport=40000, dport=53))
    for entry in ("tc-ingress", "tc-egress"):
        got = run(program, entry, data, ctx=sk_buff_ctx())
        assert got == expected(ENTRY_POINTS[entry][0], {"ipv6", "udp", "dns"}, 1, len(data))


TCP_TIMESTAMPS = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
# GRO/GSO aggregates at TC ingress: (id, headers, payload bytes, gso_size, classes, L2-L4 header
# length). Each of the ceil(payload / gso_size) segments carries its own copy of the headers.
# (Small segments: the test run takes at most a page of data.)
AGGREGATES = [
    (
        "ipv4-tcp-timestamps",
        ETH / V4 / tcp(sport=40000, dport=443, options=TCP_TIMESTAMPS),
        3 * 1000,
        1000,
        {"ipv4", "tcp", "https"},
        14 + 20 + 32,
    ),
    (
        "ipv6-tcp-last-segment-short",
        ETH / V6 / tcp(sport=80, dport=40000),
        4 * 800 + 7,
        800,
        {"ipv6", "tcp", "http"},
        14 + 40 + 20,
    ),
    (
        "vlan-ipv4-options-tcp",
        ETH
        / Dot1Q(vlan=10)
        / v4(options=[IPOption_RR()])
        / tcp(sport=40000, dport=22, options=TCP_TIMESTAMPS),
        2 * 1000,
        1000,
        {"ipv4", "tcp"},
        14 + 4 + 24 + 32,  # an empty record-route option: 4 bytes
    ),
    (
        "ipv6-hop-by-hop-udp-gso",
        ETH / V6 / IPv6ExtHdrHopByHop() / UDP(sport=40000, dport=53),
        5 * 600,
        600,
        {"ipv6", "udp", "dns"},
        14 + 40 + 8 + 8,
    ),
]


@pytest.mark.parametrize("gso_segs_set", [True, False], ids=["gso_segs", "dodgy-gso_segs-0"])
@pytest.mark.parametrize(
    ("headers", "payload", "gso_size", "classes", "header_len"),
    [pytest.param(*rest, id=case_id) for case_id, *rest in AGGREGATES],
)
def test_tc_ingress_counts_an_aggregate_as_its_wire_packets(
    program: Program,
    headers: Packet,
    payload: int,
    gso_size: int,
    classes: set[str],
    header_len: int,
    gso_segs_set: bool,
) -> None:
    """gso_segs as GRO and GSO senders set it; or 0, as virtio and tap leave it ("dodgy")."""
    data = frame(headers / (b"x" * payload))
    assert len(bytes(headers)) == header_len
    segs = -(-payload // gso_size)
    ctx = sk_buff_ctx(gso_segs=segs if gso_segs_set else 0, gso_size=gso_size)
    got = run(program, "tc-ingress", data, ctx=ctx)
    assert got == expected("rx", classes, segs, len(data) + (segs - 1) * header_len)


def test_tc_ingress_counts_an_aggregate_of_unknown_headers_without_their_copies(
    program: Program,
) -> None:
    """GRE (or a TCP header cut short): the packets still count; only the frame's own bytes."""
    gre = frame(ETH / v4(proto=47) / (b"g" * 3000))
    assert run(program, "tc-ingress", gre, ctx=sk_buff_ctx(gso_segs=3, gso_size=1000)) == (
        expected("rx", {"ipv4", "other"}, 3, len(gre))
    )
    # Without the header length, a dodgy aggregate's segments cannot be derived: one packet.
    assert run(program, "tc-ingress", gre, ctx=sk_buff_ctx(gso_size=1000)) == (
        expected("rx", {"ipv4", "other"}, 1, len(gre))
    )


@pytest.mark.parametrize("entry", ["tc-ingress", "tc-egress"])
def test_a_fin_counts_once_with_its_last_segment_in_an_aggregate(
    program: Program, entry: str
) -> None:
    """TSO and GRO carry a FIN on an aggregate's last segment only: one FIN, not three."""
    headers = ETH / V4 / tcp(sport=40000, dport=443, flags="FPA", options=TCP_TIMESTAMPS)
    data = frame(headers / (b"x" * 2500))
    header_len, gso_size, segs = 14 + 20 + 32, 1000, 3
    wire_len = len(data) + (segs - 1) * header_len
    ctx = sk_buff_ctx(gso_segs=segs, gso_size=gso_size, wire_len=wire_len)
    direction = ENTRY_POINTS[entry][0]
    want = expected(direction, {"ipv4", "tcp", "https"}, segs, wire_len)
    want[counter_name(direction, "fin", "packets")] = 1
    want[counter_name(direction, "fin", "bytes")] = header_len + 500  # the last segment
    assert run(program, entry, data, ctx=ctx) == want


def test_custom_app_ports(program: Program) -> None:
    tcp_8080 = frame(ETH / V4 / tcp(sport=40000, dport=8080))
    udp_8080 = frame(ETH / V4 / UDP(sport=40000, dport=8080))
    tcp_80 = frame(ETH / V4 / tcp(sport=40000, dport=80))
    dns_5353 = frame(ETH / V6 / UDP(sport=5353, dport=40000))
    try:
        program.set_app_ports({"http": [8080], "https": [443], "dns": [53, 5353]})
        for entry, (direction, _) in ENTRY_POINTS.items():
            assert run(program, entry, tcp_8080) == expected(
                direction, {"ipv4", "tcp", "http"}, 1, len(tcp_8080)
            )
            # http is TCP only, and port 80 is no longer http.
            assert run(program, entry, udp_8080) == expected(
                direction, {"ipv4", "udp"}, 1, len(udp_8080)
            )
            assert run(program, entry, tcp_80) == expected(
                direction, {"ipv4", "tcp"}, 1, len(tcp_80)
            )
            assert run(program, entry, dns_5353) == expected(
                direction, {"ipv6", "udp", "dns"}, 1, len(dns_5353)
            )
    finally:
        program.set_app_ports(DEFAULT_APP_PORTS)
    assert run(program, "xdp", tcp_80) == expected("rx", {"ipv4", "tcp", "http"}, 1, len(tcp_80))


def test_a_port_of_two_classes_counts_in_both(program: Program) -> None:
    data = frame(ETH / V4 / tcp(sport=8443, dport=40000))
    try:
        program.set_app_ports({"http": [8443], "https": [8443], "dns": []})
        assert run(program, "xdp", data) == expected(
            "rx", {"ipv4", "tcp", "http", "https"}, 1, len(data)
        )
    finally:
        program.set_app_ports(DEFAULT_APP_PORTS)


def test_add_interface_zeroes_both_directions(program: Program) -> None:
    run(program, "xdp", CASES[0][1])
    run(program, "tc-egress", CASES[0][1])
    program.add_interface(TEST_RUN_IFINDEX)
    assert set(program.read()[TEST_RUN_IFINDEX].values()) == {0}


def test_an_interface_without_counters_is_not_counted(program: Program) -> None:
    """Frames of an interface the program was not told to count (no add_interface, or after
    remove_interface) leave every counter as it was, and still pass."""
    program.remove_interface(TEST_RUN_IFINDEX)
    try:
        for entry, (_, passed) in ENTRY_POINTS.items():
            fd = program.xdp_fd if entry == "xdp" else program.tc_fds[entry.removeprefix("tc-")]
            assert prog_test_run(fd, CASES[0][1])[0] == passed
        assert program.read() == {}
    finally:
        program.add_interface(TEST_RUN_IFINDEX)


def test_app_port_masks_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="not an application class"):
        app_port_masks({"tcp": [80]})
    with pytest.raises(ValueError, match="not in 0-65535"):
        app_port_masks({"http": [70000]})
    http, dns = 1 << CLASSES.index("http"), 1 << CLASSES.index("dns")
    assert app_port_masks({"http": [80], "dns": [53]}) == {80: http, 53: dns, 65536 + 53: dns}


@pytest.mark.parametrize("flow_table", [0, 1024])
def test_the_flag_mask_macro_is_tcp_flag_classes(flow_table: int) -> None:
    """The C program's TCP_FLAG_CLASSES, which count once per aggregate, are bpf/classes.py's."""
    (value,) = [f for f in counting_cflags(flow_table) if f.startswith("-DTCP_FLAG_CLASSES=")]
    mask = int(value.removeprefix("-DTCP_FLAG_CLASSES=").removesuffix("U"), 0)
    assert {cls for i, cls in enumerate(CLASSES) if mask >> i & 1} == set(TCP_FLAG_CLASSES)
    assert mask < 1 << len(CLASSES)
