"""The kernel objects a sampler uses, opened from bpffs: built once by a child (bpf/build.py),
kept across restarts, replaced when the build changes.

    objects = Objects.kept_or_private(build)  # /sys/fs/bpf/netmetrics/sampler: reused or built
    objects = Objects.private(build)          # built for this process alone: nothing stays pinned
    objects.fd("counters")            # an open file descriptor, by the name bpf/build.py pins
    objects.close()                   # closes the fds; pins stay (remove() removes them)

One kept set per network namespace, held by one sampler at a time (a lock beside the
interfaces' in /run/netmetrics): a second sampler at the same time gets a private set.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bpf import libbpf
from bpf.build import (
    BUILD_MAP_VALUE,
    MAX_IFINDEX,
    MAX_INTERFACES,
    TC_FUNCTIONS,
    XDP_FUNCTION,
    Build,
)
from bpf.errors import PreflightError
from bpf.iface_lock import InterfaceLock, namespace_suffix
from bpf.interface_table import SlotTable

log = logging.getLogger("netmetrics.bpf")

PIN_ROOT = Path("/sys/fs/bpf/netmetrics")
BPFFS_MAGIC = 0xCAFE4A11
# The kept set's lock, by a name no interface can have (':' is not allowed in one).
PINS_LOCK = ":pinned"
_ROOT_DIR = Path(__file__).resolve().parent.parent


def kept_directory() -> Path:
    """Where this network namespace's kept set is pinned."""
    return PIN_ROOT / f"sampler{namespace_suffix()}"


def mount_bpffs() -> None:
    """bpffs at /sys/fs/bpf, as systemd mounts it at boot; a root sampler mounts it if missing."""
    bpffs = PIN_ROOT.parent
    if _is_bpffs(bpffs):
        return
    result = subprocess.run(
        ["mount", "-t", "bpf", "bpf", str(bpffs)], capture_output=True, text=True
    )
    if result.returncode != 0 or not _is_bpffs(bpffs):
        raise PreflightError(
            f"bpffs is not mounted at {bpffs} and mounting it failed ({result.stderr.strip()}): "
            f"mount -t bpf -o mode=700 bpf {bpffs}"
        )


def _is_bpffs(path: Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(120)  # struct statfs; f_type is its first field
    return (
        libc.statfs(str(path).encode(), buf) == 0
        and ctypes.c_long.from_buffer(buf).value == BPFFS_MAGIC
    )


class Objects:
    """Open fds of a set's pinned objects, by name."""

    def __init__(self, directory: Path, fds: dict[str, int], lock: InterfaceLock | None) -> None:
        self.directory = directory
        self.fds = fds
        self._lock = lock  # held while the kept set is ours; None for a private set
        self._known = [libbpf.know(fds[pin], name) for pin, name in _PROGRAMS.items() if pin in fds]

    @property
    def kept(self) -> bool:
        return self._lock is not None

    def fd(self, name: str) -> int:
        return self.fds[name]

    def slots(self) -> SlotTable:
        """Which interfaces the set counts, and in which slot (their counters' values are
        Program's to read)."""
        return SlotTable(self.fd("slots"), self.fd("counters"), MAX_INTERFACES, MAX_IFINDEX, 1)

    def has(self, name: str) -> bool:
        return name in self.fds

    @classmethod
    def kept_or_private(cls, build: Build) -> Objects:
        """The namespace's kept set, reused when its identity is the build's and rebuilt (and
        logged) when not; a private set if another sampler holds the kept one."""
        mount_bpffs()
        lock = InterfaceLock(PINS_LOCK)
        holder = lock.try_acquire()
        if holder is not None:
            log.info(
                "another sampler (pid %s) keeps the pinned counters; this one's are its own, "
                "and are not kept across a restart",
                holder,
            )
            return cls.private(build)
        try:
            return cls._kept(build, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _kept(cls, build: Build, lock: InterfaceLock) -> Objects:
        directory = kept_directory()
        wanted = build.identity()
        if directory.exists():
            found = _identity(directory)
            if found == wanted:
                log.info("reusing the programs and counters pinned in %s", directory)
                return cls(directory, _open_all(directory), lock)
            changed = ", ".join(
                f"{key} {found.get(key)!r} -> {wanted[key]!r}"
                for key in wanted
                if found.get(key) != wanted[key]
            )
            log.warning(
                "replacing the programs pinned in %s: %s; counting afresh",
                directory,
                changed or "unreadable",
            )
            with opened(directory) as old:
                if old is not None:
                    detach_everywhere(old)
            remove(directory)
        log.debug("compiling the programs and pinning them in %s", directory)
        _build(build, directory)
        return cls(directory, _open_all(directory), lock)

    @classmethod
    def private(cls, build: Build) -> Objects:
        """A set for this process alone: pinned only long enough to open it."""
        mount_bpffs()
        # No dots: bpffs refuses names with one.
        directory = PIN_ROOT / f"private-{os.getpid()}-{id(build):x}"
        _build(build, directory)
        try:
            fds = _open_all(directory)
        finally:
            remove(directory)
        return cls(directory, fds, None)

    def close(self) -> None:
        """Close the fds and let go of the kept set (its pins stay)."""
        for known_id in self._known:
            libbpf.forget(known_id)
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def remove(self) -> None:
        """Close, and remove the pins: what no interface holds is unloaded."""
        directory, kept = self.directory, self.kept
        self.close()
        if kept:
            remove(directory)
            log.debug("removed the programs and counters pinned in %s", directory)


# The programs' pins and their names in the kernel: by these, what a set left attached is ours.
_PROGRAMS = {"xdp": XDP_FUNCTION, **{f"tc_{side}": name for side, name in TC_FUNCTIONS.items()}}


@contextlib.contextmanager
def opened(directory: Path) -> Iterator[Objects | None]:
    """The set pinned in `directory`, open inside (None if there is none or it is half-built),
    for a caller that holds it (holding_kept)."""
    try:
        fds = _open_all(directory) if directory.is_dir() else None
    except PreflightError:  # half-built: nothing of it was attached
        fds = None
    objects = None if fds is None else Objects(directory, fds, None)
    try:
        yield objects
    finally:
        if objects is not None:
            objects.close()


def detach_everywhere(objects: Objects) -> None:
    """Remove the set's hooks from every interface it counts (before it is unpinned: what
    stays attached would count into maps nobody reads)."""
    from bpf.hooks import detach_leftovers

    for ifindex in objects.slots().ifindexes():
        try:
            detach_leftovers(ifindex)
        except PreflightError as exc:  # a live sampler's now (it counts with its own set)
            log.warning("%s", exc)


def _build(build: Build, directory: Path) -> None:
    """Run bpf/build.py in a child; PreflightError with its one line if it fails."""
    PIN_ROOT.mkdir(mode=0o700, exist_ok=True)
    remove(directory)  # a half-built set of a child killed mid-way
    result = subprocess.run(
        [sys.executable, "-m", "bpf.build", str(directory), build.to_json()],
        cwd=_ROOT_DIR, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        remove(directory)
        raise PreflightError(
            result.stdout.strip() or f"building the programs failed (exit {result.returncode})"
        )


def _identity(directory: Path) -> dict[str, Any]:
    try:
        fd = libbpf.pinned(str(directory / "build"))
    except OSError:
        return {}
    try:
        value = ctypes.create_string_buffer(BUILD_MAP_VALUE)
        libbpf.lookup(fd, ctypes.c_uint32(0), value)
        return json.loads(value.value or b"{}")
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)


def _open_all(directory: Path) -> dict[str, int]:
    fds: dict[str, int] = {}
    try:
        for path in sorted(directory.iterdir()):
            fds[path.name] = libbpf.pinned(str(path))
    except OSError as exc:
        for fd in fds.values():
            os.close(fd)
        raise PreflightError(f"cannot open the pinned programs in {directory}: {exc}") from None
    return fds


@contextlib.contextmanager
def holding_kept() -> Iterator[None]:
    """Hold the kept set's lock inside, or raise PreflightError naming the sampler using it."""
    lock = InterfaceLock(PINS_LOCK)
    holder = lock.try_acquire()
    if holder is not None:
        raise PreflightError(
            f"a netmetrics sampler (pid {holder}) is running with the kept counters: stop it "
            "first (systemctl stop netmetrics-sampler)"
        )
    try:
        yield
    finally:
        lock.release()


def forget_kept(kept: Objects | None, chosen: Callable[[int], bool]) -> bool:
    """Free the kept counters of the interfaces `chosen` (by ifindex) and of those that are
    gone; remove the pins once none is counted. Whether none is (and nothing is pinned). The
    caller holds the set (holding_kept, opened) and has detached the interfaces."""
    if kept is None:
        remove(kept_directory())  # nothing, or a half-built set
        return True
    slots = kept.slots()
    present = {ifindex for ifindex, _ in socket.if_nameindex()}
    for ifindex in slots.ifindexes():
        if chosen(ifindex) or ifindex not in present:
            slots.remove(ifindex)
    if slots.ifindexes():
        return False
    remove(kept.directory)
    return True


def remove(directory: Path) -> None:
    """Unpin everything in `directory` and remove it (nothing if it is not there)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
