"""One sampler per interface: an exclusive flock on /run/netmetrics/<iface>.lock while attached.

The kernel drops a flock when its holder dies, however it dies, so a lock that cannot be taken
always means a live sampler. The file holds the holder's pid (for the error message) and, once
it created the clsact qdisc, the word `clsact`: a sampler that finds a leftover of a SIGKILLed
one inherits that ownership and removes the qdisc on detach, as its creator would have.
A clean release deletes the file (a killed sampler's file stays, for its successor to read).
"""

import fcntl
import os
from pathlib import Path

from bpf.errors import PreflightError

LOCK_DIR = Path("/run/netmetrics")
CLSACT_NOTE = "clsact"
_HOST_NETNS_INO = 0xEFFFFFF9  # PROC_NET_INIT_INO: init_net's inode in recent kernels


def namespace_suffix() -> str:
    """ "" in the host's network namespace, else "@netns<inode>": interface names (and so what
    a sampler keeps by them) are per network namespace."""
    # /proc/1/ns/net, the obvious reference, is not readable in every sandbox; any kernel that
    # does not give the host namespace this fixed inode just gets the suffix there too.
    netns = os.stat("/proc/self/ns/net").st_ino
    return "" if netns == _HOST_NETNS_INO else f"@netns{netns}"


def _lock_path(iface: str) -> Path:
    return LOCK_DIR / f"{iface}{namespace_suffix()}.lock"


class InterfaceLock:
    """Held from acquire() to release(); `previous_notes` are what the last holder wrote."""

    def __init__(self, iface: str) -> None:
        self.iface = iface
        self.path = _lock_path(iface)
        self._fd: int | None = None
        self.previous_notes: list[str] = []

    def acquire(self) -> None:
        """Take the lock or raise PreflightError naming the sampler that holds it."""
        holder = self.try_acquire()
        if holder is not None:
            raise PreflightError(
                f"another netmetrics sampler (pid {holder}) is already running on "
                f"{self.iface}; stop it first"
            )

    def try_acquire(self) -> str | None:
        """Take the lock and return None, or return the pid of the sampler that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").split("\n", 1)[0] or "?"
                os.close(fd)
                return holder
            # The last holder deletes the file on release: if it did so between our open and
            # our flock, we hold a lock on a deleted file, so start again on the path's file.
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self.previous_notes = os.pread(fd, 4096, 0).decode(errors="replace").split()[1:]
        self._fd = fd
        self._write([])
        return None

    def note(self, word: str) -> None:
        """Record a fact for a successor that finds our leftovers."""
        self._write([word])

    def _write(self, notes: list[str]) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, "\n".join([str(os.getpid()), *notes, ""]).encode(), 0)

    def release(self, keep_notes: bool = False) -> None:
        """Delete the file, while still holding the lock, then drop the lock; with `keep_notes`
        leave the file, as a killed holder would, for a successor that takes over what it left
        attached."""
        if self._fd is None:
            return
        if not keep_notes:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
