"""Files made by root under sudo are handed back to the user who ran sudo.

The sampler needs root, the web server does not: without this, `sudo make run` would leave a
database (and its -wal/-shm files) that `manage.py runserver` could not open as that user.
"""

import contextlib
import os
from pathlib import Path


def give_to_invoking_user(*paths: Path) -> None:
    """chown paths to SUDO_UID:SUDO_GID when running as root under sudo; else do nothing."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # e.g. no -wal file yet
            os.chown(path, int(uid), int(gid))
