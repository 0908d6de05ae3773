"""The one exception users see from the kernel side, and BCC's failures turned into it."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class PreflightError(RuntimeError):
    """Something the user can fix stops the sampler; the message is one line: cause and fix."""


BCC_MISSING = "BCC's Python bindings are missing: apt-get install python3-bpfcc (or make setup)"


def bcc_bpf() -> Any:
    """BCC's BPF class (untyped), imported when needed: Debian's python3-bpfcc may be missing."""
    try:
        from bcc import BPF
    except ImportError:
        raise PreflightError(BCC_MISSING) from None
    return BPF


@contextlib.contextmanager
def loading(source: Path) -> Iterator[None]:
    """Compile and load source inside: BCC raises bare Exceptions, the user gets one line."""
    try:
        yield
    except Exception as exc:
        first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise PreflightError(
            f"cannot compile or load {source.name} ({first_line}); check that the kernel "
            "headers match the running kernel (make setup)"
        ) from None
