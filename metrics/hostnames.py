"""Names of addresses, only where they are known without asking anyone: the hosts file.

Never a DNS or reverse (PTR) query: answering the API or the live dashboard must not wait on a
resolver, nor tell one which remote addresses this host talks to. The file is read again only
when it changes (its mtime, size or path), so a name added to it shows up on the next answer.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

HOSTS_FILE = Path("/etc/hosts")

# (path, mtime_ns, size) of the file as last read, and its names by normalised address.
_cache: tuple[tuple[str, int, int] | None, dict[str, str]] = (None, {})


def _normal(address: str) -> str | None:
    """One spelling per address (IPv6 compressed, IPv4-mapped as IPv4); None if not one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def _parse(text: str) -> dict[str, str]:
    """address -> its first name; a later line for the same address does not replace it."""
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        address = _normal(fields[0])
        if address is not None:
            names.setdefault(address, fields[1])
    return names


def _names() -> dict[str, str]:
    global _cache
    path = Path(HOSTS_FILE)
    try:
        stat = path.stat()
    except OSError:  # no hosts file: no names
        return {}
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key != _cache[0]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:  # unreadable: no names, until it changes
            text = ""
        _cache = (key, _parse(text))
    return _cache[1]


def known_name(address: str) -> str | None:
    """The hosts file's name for address, or None; never a network query."""
    normal = _normal(address)
    return None if normal is None else _names().get(normal)
