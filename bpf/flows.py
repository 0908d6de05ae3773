"""A flow as the kernel's flow table (the LRU hash `flows` of bpf/netmetrics.c) names it, and its
traffic: the layout both the sampler and the web process read. It needs neither BCC nor libbpf;
bpf/flow_table.py empties the kernel's table.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, NamedTuple

# struct flow_key: local[16], remote[16], local_port, remote_port (network order), proto, pad[3],
# then the interface's ifindex (host order). A flow's key without the ifindex, its first
# TUPLE_SIZE bytes, names it on whichever interface: the harvest splits the table by interface.
KEY_SIZE = 44
TUPLE_SIZE = 40
_PORTS = struct.Struct("!HH")
_PORTS_OFFSET = 32
_PROTO_OFFSET = 36
_IFINDEX = struct.Struct("=I")


class FlowKey(NamedTuple):
    protocol: int  # IP protocol number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6 ...
    local: str  # the monitored host's side; IPv4 as dotted quad
    local_port: int  # 0 when the protocol has none
    remote: str
    remote_port: int


class Traffic(NamedTuple):
    """One direction of a flow's traffic."""

    packets: int = 0
    bytes: int = 0


class FlowCounts(NamedTuple):
    """A flow's traffic in some time, received (rx) and sent (tx). Its fields, in their order,
    are the columns of a stored flow.
    """

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0

    @property
    def rx(self) -> Traffic:
        return Traffic(self.rx_packets, self.rx_bytes)

    @property
    def tx(self) -> Traffic:
        return Traffic(self.tx_packets, self.tx_bytes)

    @property
    def packets(self) -> int:
        return self.rx_packets + self.tx_packets

    @property
    def bytes(self) -> int:
        return self.rx_bytes + self.tx_bytes


COUNT_FIELDS: tuple[str, ...] = FlowCounts._fields
NO_TRAFFIC = FlowCounts()


def _address(raw: bytes) -> str:
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def decode_key(raw: bytes) -> FlowKey:
    """A flow's key (TUPLE_SIZE bytes or more) as addresses, ports and protocol."""
    local_port, remote_port = _PORTS.unpack_from(raw, _PORTS_OFFSET)
    return FlowKey(
        raw[_PROTO_OFFSET], _address(raw[:16]), local_port, _address(raw[16:32]), remote_port
    )


def key_ifindex(raw: bytes) -> int:
    """The interface of a kernel flow key (KEY_SIZE bytes)."""
    return _IFINDEX.unpack_from(raw, TUPLE_SIZE)[0]


def encode_key(key: FlowKey) -> bytes:
    """decode_key's inverse: the TUPLE_SIZE bytes the kernel's key for this flow starts with."""

    def packed(address: str) -> bytes:
        ip = ipaddress.ip_address(address)
        return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed

    return (
        packed(key.local)
        + packed(key.remote)
        + _PORTS.pack(key.local_port, key.remote_port)
        + bytes([key.protocol, 0, 0, 0])
    )


def flow_fields(key: FlowKey, counts: FlowCounts) -> dict[str, Any]:
    """A flow's stored and served fields: its ends, and rx/tx packets and bytes."""
    return key._asdict() | counts._asdict()
