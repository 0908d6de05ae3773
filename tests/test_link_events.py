"""rtnetlink link notifications: the header walk, overflow, and the real kernel's events."""

from __future__ import annotations

import errno
import os
import select
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from metrics.link_events import RTM_DELLINK, RTM_NEWLINK, LinkEvents, _has_link_message

RTM_NEWADDR = 20
NLMSG_DONE = 3


def message(kind: int, payload: bytes = b"") -> bytes:
    """One netlink message: nlmsghdr, payload, padding to 4 bytes."""
    length = 16 + len(payload)
    padding = b"\0" * (-length % 4)
    return struct.pack("=IHHII", length, kind, 0, 0, 0) + payload + padding


@pytest.mark.parametrize(
    ("data", "changed"),
    [
        (message(RTM_NEWLINK, b"x" * 40), True),
        (message(RTM_DELLINK), True),
        (message(RTM_NEWADDR, b"abc") + message(RTM_NEWLINK, b"x"), True),  # past padding
        (message(RTM_NEWADDR, b"abc") + message(NLMSG_DONE), False),
        (b"", False),
        (message(RTM_NEWLINK)[:15], False),  # truncated header
        (struct.pack("=IHHII", 0, RTM_NEWADDR, 0, 0, 0) + message(RTM_NEWLINK), False),
    ],
    ids=["newlink", "dellink", "second", "others", "empty", "truncated", "zero-length"],
)
def test_link_messages_are_found_in_a_datagram(data: bytes, changed: bool) -> None:
    assert _has_link_message(data) is changed


class Overflowing:
    """A socket whose kernel dropped events: ENOBUFS once, then nothing pending."""

    def __init__(self, error: int = errno.ENOBUFS) -> None:
        self.errors = [OSError(error, os.strerror(error)), BlockingIOError()]

    def recv_into(self, buffer: bytearray) -> int:
        raise self.errors.pop(0)

    def close(self) -> None:
        pass


def test_lost_events_count_as_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    with LinkEvents() as events:
        events._sock.close()
        monkeypatch.setattr(events, "_sock", Overflowing())
        assert events.drain() is True


def test_other_errors_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    with LinkEvents() as events:
        events._sock.close()
        monkeypatch.setattr(events, "_sock", Overflowing(errno.EBADF))
        with pytest.raises(OSError, match="Bad file descriptor"):
            events.drain()


@pytest.fixture
def events(requires_root: None) -> Iterator[LinkEvents]:
    with LinkEvents() as events:
        yield events


def changed_within(events: LinkEvents, seconds: float) -> bool:
    """Whether drain() says a link changed within `seconds`, waiting on fileno() meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([events.fileno()], [], [], left)
        if ready and events.drain():
            return True
    return False


def settle(events: LinkEvents) -> None:
    """Drain until 0.2 s pass without an event (udev may still rename or re-address a link)."""
    deadline = time.monotonic() + 5
    while changed_within(events, 0.2):
        assert time.monotonic() < deadline, "links kept changing"


def test_a_link_added_and_deleted_is_told(events: LinkEvents) -> None:
    name = f"nmle{os.getpid() % 100000}"
    settle(events)
    assert events.drain() is False
    try:
        subprocess.run(
            ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
            check=True,
            capture_output=True,
        )
        assert changed_within(events, 2.0)
        settle(events)
        assert events.drain() is False  # nothing pending: False, at once
        time.sleep(0.2)
        assert events.drain() is False
        subprocess.run(["ip", "link", "del", name], check=True, capture_output=True)
        assert changed_within(events, 2.0)
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
