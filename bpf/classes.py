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

# Application classes are recognised by port, on these transports only.
APP_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "http": ("tcp",),
    "https": ("tcp",),
    "dns": ("tcp", "udp"),
}

# Classes of a TCP flag: counted once per frame or aggregate that carries it (TSO and GRO put a
# FIN only on an aggregate's last segment), never once per segment.
TCP_FLAG_CLASSES: tuple[str, ...] = ("syn", "synack", "rst", "fin")

DEFAULT_APP_PORTS: dict[str, tuple[int, ...]] = {"http": (80,), "https": (443,), "dns": (53,)}


def counter_name(direction: str, cls: str, unit: str) -> str:
    """Column and key name of one counter, e.g. ``rx_tcp_bytes``; unit is packets or bytes."""
    return f"{direction}_{cls}_{unit}"


COUNTER_NAMES: tuple[str, ...] = tuple(
    counter_name(d, c, u) for d in DIRECTIONS for c in CLASSES for u in ("packets", "bytes")
)
