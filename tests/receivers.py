"""Webhook receivers on 127.0.0.1 for the notification tests and bench/alert_delivery: one that
records each POST and answers with the statuses it is given, and one that accepts connections
and never answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.processes import free_port, wait_for


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: Any  # the JSON received
    at: float  # time.monotonic() on arrival


class Receiver:
    """Records every POST; answers each with the next of `statuses`, then 200 (a context
    manager: serving on its own thread until the block ends)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.posts: list[Post] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.posts.append(Post(self.path, headers, body, time.monotonic()))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_posts(self, count: int, timeout: float = 20) -> list[Post]:
        """The posts once there are at least count."""
        wait_for(lambda: len(self.posts) >= count, timeout, f"{count} POST(s) to {self.url}")
        return self.posts


class StuckReceiver:
    """A listening socket that never accepts: the kernel completes each connection, and the
    request sent on it is never answered (a context manager)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", free_port()))
        self.socket.listen(128)
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> StuckReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()
