"""The host's interfaces as sysfs shows them, and which of them a host total sums.

The rule: a host total leaves an interface out when an interface that carries its traffic is
chosen too, so that no packet is counted twice. A bond, bridge, team or VRF carries the traffic
of the interfaces enslaved to it; the device below a VLAN or macvlan carries the VLAN's; and
carrying passes on (a VLAN on a VLAN is carried by the device below both). A bond's or bridge's
own ports do not carry it. So a bond chosen with its members counts the bond alone, members
chosen without their bond count each, and a VLAN counts unless its lower device is chosen.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SYSFS_NET = Path("/sys/class/net")

IFF_UP = 0x1
IFF_LOOPBACK = 0x8

# What reading a device that is being unregistered can raise (its attributes say EINVAL once it
# is no longer alive, then its files go); anything else is a real error.
_VANISHED = (errno.ENOENT, errno.ENOTDIR, errno.EINVAL, errno.ENODEV, errno.ENXIO)


@dataclass(frozen=True)
class Link:
    name: str
    ifindex: int
    up: bool  # IFF_UP in NAME/flags
    loopback: bool  # IFF_LOOPBACK
    master: str | None  # the bond, bridge, team or VRF it is enslaved to
    lowers: tuple[str, ...]  # a VLAN's or macvlan's device below; a bond's or bridge's ports
    kind: str  # "bond", "bridge" or ""


def current_links(sysfs: Path = SYSFS_NET) -> dict[str, Link]:
    """Every interface in `sysfs`, by name.

    Interfaces come and go while we read (a container stopping), so one that vanishes halfway is
    left out rather than failing the read: the caller re-reads on the next link event anyway.
    """
    links = {}
    for name in sorted(os.listdir(sysfs)):
        try:
            links[name] = _read_link(sysfs / name)
        except OSError as exc:
            # Also skips /sys/class/net/bonding_masters, a file rather than a device.
            if exc.errno not in _VANISHED:
                raise
    return links


def _read_link(path: Path) -> Link:
    flags = int((path / "flags").read_text(), 16)
    ifindex = int((path / "ifindex").read_text())
    try:
        master: str | None = os.path.basename(os.readlink(path / "master"))
    except FileNotFoundError:
        master = None
    lowers = tuple(sorted(e[len("lower_") :] for e in os.listdir(path) if e.startswith("lower_")))
    kind = "bond" if (path / "bonding").is_dir() else "bridge" if (path / "bridge").is_dir() else ""
    return Link(
        name=path.name,
        ifindex=ifindex,
        up=bool(flags & IFF_UP),
        loopback=bool(flags & IFF_LOOPBACK),
        master=master,
        lowers=lowers,
        kind=kind,
    )


def total_members(
    chosen: Iterable[str], links: Mapping[str, Link]
) -> tuple[list[str], dict[str, str]]:
    """The chosen names a host total sums (sorted), and why each other chosen name is left out.

    Names that are not in `links` are counted: they are going away, and their last samples are
    theirs. In a loop of carriers (which the kernel does not allow) no member is left out,
    since leaving them all out would lose their traffic.
    """
    wanted = set(chosen)
    counted, left_out = [], {}
    for name in sorted(wanted):
        carriers = _carriers(name, links) if name in links else {}
        path = next(
            (
                path
                for carrier, path in carriers.items()
                if carrier in wanted and name not in _carriers(carrier, links)
            ),
            None,
        )
        if path is None:
            counted.append(name)
        else:
            left_out[name] = _reason(path, links)
    return counted, left_out


def _carriers(name: str, links: Mapping[str, Link]) -> dict[str, list[str]]:
    """Every interface that carries `name`, directly or through others, with the path to it.

    One step up is the master and each lower device whose master is not `name` (a bond's or
    bridge's ports are among its lowers but do not carry it). Nearest first.
    """
    paths = {name: [name]}
    queue = deque([name])
    while queue:
        step = queue.popleft()
        link = links.get(step)
        if link is None:
            continue
        up = [link.master] if link.master else []
        up += [
            low for low in link.lowers if (lower := links.get(low)) is None or lower.master != step
        ]
        for carrier in up:
            if carrier not in paths:  # not a loop, nor reached by a shorter path
                paths[carrier] = [*paths[step], carrier]
                queue.append(carrier)
    del paths[name]
    return paths


def _reason(path: list[str], links: Mapping[str, Link]) -> str:
    """Why a chosen interface is left out: its first step up, and the chosen carrier if further.

    The master's kind (its bonding/ or bridge/ directory) says whether a port is a bond's
    member or a bridge's port: the same as the port's bonding_slave/ or brport/ would.
    """
    name, step, chosen = path[0], path[1], path[-1]
    if links[name].master == step:
        kind = links[step].kind if step in links else ""
        relation = {"bridge": "a port of bridge", "bond": "a member of bond"}.get(
            kind, "enslaved to"
        )
    else:
        relation = "VLAN/upper device of"
    if step == chosen:
        return f"{relation} {step}, which is chosen"
    return f"{relation} {step}, carried by {chosen}, which is chosen"
