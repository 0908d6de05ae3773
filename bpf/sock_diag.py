"""The host's established TCP connections and their smoothed RTT, by sock_diag (what `ss -ti`
reads): one netlink dump per address family, no per-packet cost and no kernel headers.

    for conn in tcp_connections():   # TcpConnection(cookie, local=b"...16 bytes", rtt_us, ...)

Addresses are 16 bytes, IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d), as in bpf/tcp_health.c. Only
this network namespace's sockets are seen.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2  # the attribute holding struct tcp_info
TCP_ESTABLISHED = 1

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext (a bit per wanted attribute), pad, states; then
# inet_diag_sockid (48 bytes): all zero, for every socket.
_REQUEST = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans; sockid: sport, dport (network order), src[16],
# dst[16], if, cookie; expires, rqueue, wqueue, uid, inode.
_DIAG_MSG = struct.Struct("=BBBB2H16s16sIQ5I")
_RTATTR = struct.Struct("=HH")  # len, type
# struct tcp_info (linux/tcp.h): 8 one-byte fields, then u32s (and later u64s); these never
# moved. tcpi_segs_in came with Linux 4.2.
_TCPI_RTT, _TCPI_SEGS_IN = 68, 140
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_seq = itertools.count(1)


class TcpConnection(NamedTuple):
    cookie: int  # the socket's identity while it lives
    local: bytes  # 16 bytes
    rtt_us: int  # smoothed RTT (tcpi_rtt); 0 before the first sample
    segs_in: int  # segments received so far (u32, wraps)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _parse(payload: bytes) -> TcpConnection | None:
    family, _state, _timer, _retrans, _sport, _dport, src, _dst, _if, cookie, *_ = (
        _DIAG_MSG.unpack_from(payload)
    )
    local = _V4_MAPPED + src[:4] if family == socket.AF_INET else src
    offset = _align(_DIAG_MSG.size)
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size:
            break
        if kind == INET_DIAG_INFO and length - _RTATTR.size >= _TCPI_SEGS_IN + 4:
            info = offset + _RTATTR.size
            (rtt,) = struct.unpack_from("=I", payload, info + _TCPI_RTT)
            (segs_in,) = struct.unpack_from("=I", payload, info + _TCPI_SEGS_IN)
            return TcpConnection(cookie, local, rtt, segs_in)
        offset += _align(length)
    return None


def _dump(nl: socket.socket, family: int) -> Iterator[TcpConnection]:
    """One family's established TCP sockets, asked over the netlink socket nl."""
    seq = next(_seq)
    body = _REQUEST.pack(
        family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 1 << TCP_ESTABLISHED
    )
    header = _NLMSG.pack(
        _NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    nl.send(header + body)
    while True:
        data = nl.recv(1 << 16)
        offset = 0
        while offset + _NLMSG.size <= len(data):
            length, kind, _flags, msg_seq, _pid = _NLMSG.unpack_from(data, offset)
            if length < _NLMSG.size:
                return
            payload = data[offset + _NLMSG.size : offset + length]
            offset += _align(length)
            if msg_seq != seq:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (error,) = struct.unpack_from("=i", payload)
                raise OSError(-error, f"sock_diag: {os.strerror(-error)}")
            connection = _parse(payload)
            if connection is not None:
                yield connection


def tcp_connections() -> list[TcpConnection]:
    """Every established TCP connection of this network namespace, IPv4 and IPv6."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        return [conn for family in (socket.AF_INET, socket.AF_INET6) for conn in _dump(nl, family)]
