"""manage.py subprocesses against a scratch database: what the end-to-end tests and the benches
share (the sampler and the web server must run as the separate processes they are in use)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


class ProcessFailed(Exception):
    """A manage.py subprocess failed; the message ends with the tail of its output."""


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll condition every 0.1 s until it returns something truthy; TimeoutError says what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def migrated_env(db: Path) -> dict[str, str]:
    """An environment for child processes whose NETMETRICS_DB is db, freshly migrated."""
    env = {**os.environ, "NETMETRICS_DB": str(db), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise ProcessFailed(f"manage.py migrate failed: {result.stderr.strip()[-500:]}")
    return env


def db_rows(env: dict[str, str], sql: str, *params: object) -> list[tuple]:
    """Rows of a query on the child processes' database, read directly with sqlite3."""
    with contextlib.closing(sqlite3.connect(env["NETMETRICS_DB"], timeout=5)) as db:
        return db.execute(sql, params).fetchall()


class Managed:
    """A manage.py subprocess with its output in a log file, for failure messages; in the
    network namespace `netns` if given (`ip netns exec` execs it: the pid is its own)."""

    def __init__(
        self, env: dict[str, str], log: Path, *args: str, netns: str | None = None
    ) -> None:
        self.log = log
        self.args = args
        prefix = ["ip", "netns", "exec", netns] if netns else []
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ensure_running(self) -> None:
        if not self.running():
            raise ProcessFailed(
                f"manage.py {self.args[0]} exited {self.proc.returncode}: {self.output()[-800:]}"
            )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send sig (unless it has exited) and return the exit code; SIGKILL after timeout."""
        if self.running():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(
                f"manage.py {self.args[0]} ignored signal {sig} for {timeout:g} s"
            ) from None
