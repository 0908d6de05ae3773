"""rtnetlink's link notifications, so that the sampler learns of interfaces without polling.

The events are only a trigger: after any of them the caller lists the links again from sysfs
(metrics/links.py), so only the message headers are read here, with the stdlib socket module.
"""

from __future__ import annotations

import errno
import socket
import struct
from types import TracebackType

RTMGRP_LINK = 1  # the multicast group of link notifications
RTM_NEWLINK = 16
RTM_DELLINK = 17
SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it
RCVBUF = 1 << 20  # room for a burst (a hundred containers starting) before ENOBUFS

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
_DATAGRAM = 1 << 16  # a datagram longer than this is truncated, its first header kept


class LinkEvents:
    """Tells when any interface appeared, went, changed flags, name or master."""

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            socket.NETLINK_ROUTE,
        )
        try:
            try:  # FORCE goes past net.core.rmem_max, as root; else rmem_max caps it
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._sock.bind((0, RTMGRP_LINK))
        except OSError:
            self._sock.close()
            raise
        self._buffer = bytearray(_DATAGRAM)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> bool:
        """Read every pending message without blocking: whether a link was added, changed or
        removed, or events were lost (ENOBUFS), and so the caller must list the links again."""
        changed = False
        while True:
            try:
                size = self._sock.recv_into(self._buffer)
            except BlockingIOError:
                return changed
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                changed = True  # the kernel dropped events; the socket reads on after that
                continue
            changed |= _has_link_message(memoryview(self._buffer)[:size])

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LinkEvents:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _has_link_message(data: memoryview | bytes) -> bool:
    """Whether a datagram holds an RTM_NEWLINK or RTM_DELLINK message (each 4-byte aligned)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            return True
        if length < _HEADER.size:  # malformed: no way to the next message
            return False
        offset += (length + 3) & ~3
    return False
