"""sock_diag's view of TCP connections, on loopback: no root needed."""

import socket

import pytest

from bpf.classes import RTT_BUCKETS
from bpf.sock_diag import tcp_connections
from bpf.tcp_health import rtt_bucket

LOOPBACK = {
    socket.AF_INET: ("127.0.0.1", b"\0" * 10 + b"\xff\xff\x7f\0\0\1"),
    socket.AF_INET6: ("::1", b"\0" * 15 + b"\1"),
}


SO_COOKIE = 57  # <asm-generic/socket.h>; the socket module does not name it


def cookie(sock: socket.socket) -> int:
    """The socket's cookie, as sock_diag reports it."""
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")


@pytest.mark.parametrize("family", LOOPBACK, ids=["ipv4", "ipv6"])
def test_an_established_connection_is_listed_with_its_rtt(family) -> None:
    host, packed = LOOPBACK[family]
    with socket.create_server((host, 0), family=family) as server:
        port = server.getsockname()[1]
        client = socket.create_connection((host, port), timeout=5)
        peer, _ = server.accept()
        with client, peer:
            for _ in range(5):
                client.sendall(b"x")
                assert peer.recv(1) == b"x"
                peer.sendall(b"k")
                assert client.recv(1) == b"k"
            cookies = {cookie(client), cookie(peer)}
            mine = [c for c in tcp_connections() if c.cookie in cookies]
    # Both ends (other processes' loopback connections left out), each with an RTT sample
    # (loopback round trips are well under 100 ms), and the handshake's and the exchange's
    # segments received.
    assert {c.cookie for c in mine} == cookies and all(c.local == packed for c in mine), mine
    assert all(0 < c.rtt_us < 100_000 and c.segs_in >= 6 for c in mine), mine


def test_rtt_buckets_are_floor_log2_with_an_open_last_one() -> None:
    assert [rtt_bucket(us) for us in (1, 2, 3, 4, 1023, 1024)] == [0, 1, 1, 2, 9, 10]
    assert rtt_bucket(1 << 40) == RTT_BUCKETS - 1
