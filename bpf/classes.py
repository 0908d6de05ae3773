"""The traffic classes the kernel program counts: the one list both the C and the database use.

The loader passes each class's index to the C program as a macro (``CLASS_TCP`` ...), so adding
a class here is the only change the kernel side needs besides the rule that sets its bit.
"""

DIRECTIONS: tuple[str, ...] = ("rx", "tx")

# "total" is every frame; the rest overlap (a DNS-over-UDP packet is ipv4, udp and dns).
CLASSES: tuple[str, ...] = (
    "total",
    "ipv4",
    "ipv6",
    "tcp",
    "udp",
    "icmp",
    "other",
    "http",
    "https",
    "dns",
    # TCP connection events, by flags: an opening SYN, its SYN-ACK, a RST, a FIN.
    "syn",
    "synack",
    "rst",
    "fin",
)

# What the dashboard calls each class.
CLASS_LABELS: dict[str, str] = {
    "total": "Total",
    "ipv4": "IPv4",
    "ipv6": "IPv6",
    "tcp": "TCP",
    "udp": "UDP",
    "icmp": "ICMP",
    "other": "Other",
    "http": "HTTP",
    "https": "HTTPS",
    "dns": "DNS",
    "syn": "TCP SYN",
    "synack": "TCP SYN-ACK",
    "rst": "TCP RST",
    "fin": "TCP FIN",
}

# Application classes are recognised by port, on these transports only.
APP_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "http": ("tcp",),
    "https": ("tcp",),
    "dns": ("tcp", "udp"),
}

# Classes of a TCP flag: counted once per frame or aggregate that carries it (TSO and GRO put a
# FIN only on an aggregate's last segment), never once per segment. The loader passes their mask
# to the C program as TCP_FLAG_CLASSES.
TCP_FLAG_CLASSES: tuple[str, ...] = ("syn", "synack", "rst", "fin")

DEFAULT_APP_PORTS: dict[str, tuple[int, ...]] = {"http": (80,), "https": (443,), "dns": (53,)}


def counter_name(direction: str, cls: str, unit: str) -> str:
    """Column and key name of one counter, e.g. ``rx_tcp_bytes``; unit is packets or bytes."""
    return f"{direction}_{cls}_{unit}"


COUNTER_NAMES: tuple[str, ...] = tuple(
    counter_name(d, c, u) for d in DIRECTIONS for c in CLASSES for u in ("packets", "bytes")
)

# TCP health (bpf/tcp_health.py): segments retransmitted by connections of the interface's
# addresses (a tracepoint), and a log2 histogram of their smoothed RTT (sock_diag), one count per
# connection that received anything in the interval: bucket k holds RTTs in [2^k, 2^(k+1))
# microseconds, the last one everything from 2^(RTT_BUCKETS - 1) up (8.4 s).
RTT_BUCKETS = 24
RTT_NAMES: tuple[str, ...] = tuple(f"rtt_{k:02d}" for k in range(RTT_BUCKETS))
HEALTH_NAMES: tuple[str, ...] = ("tcp_retransmits", *RTT_NAMES)

# Flows the kernel's flow table evicted before the sampler could read them (bpf/flows.py): their
# traffic is missing from the flows, never from the counters above.
FLOW_NAMES: tuple[str, ...] = ("flows_dropped",)

# Every cumulative counter the kernel side reports, as the sampler stores them.
ALL_COUNTER_NAMES: tuple[str, ...] = COUNTER_NAMES + HEALTH_NAMES + FLOW_NAMES
