"""The host's links read from sysfs, and the host total's members: a fake sysfs tree, then the
real kernel's with a bridge of our own."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from metrics import links as links_module
from metrics.links import Link, current_links, total_members

UP = 0x1003  # IFF_UP | IFF_BROADCAST | IFF_MULTICAST
DOWN = 0x1002


class FakeSysfs:
    """/sys/class/net as the kernel lays it out, for the files and links current_links reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ifindex = 0

    def device(self, name: str, flags: int = UP, kind: str = "") -> Path:
        self.ifindex += 1
        path = self.root / name
        path.mkdir()
        (path / "ifindex").write_text(f"{self.ifindex}\n")
        (path / "flags").write_text(f"{flags:#06x}\n")
        if kind == "bond":
            (path / "bonding").mkdir()
            (path / "bonding" / "slaves").write_text("\n")
        elif kind == "bridge":
            (path / "bridge").mkdir()
        return path

    def enslave(self, port: str, master: str) -> None:
        """`ip link set PORT master MASTER`: the links both ways, and the port's own directory."""
        (self.root / port / "master").symlink_to(f"../{master}")
        (self.root / port / f"upper_{master}").symlink_to(f"../{master}")
        (self.root / master / f"lower_{port}").symlink_to(f"../{port}")
        if (self.root / master / "bridge").is_dir():
            (self.root / port / "brport").mkdir()
        slaves = self.root / master / "bonding" / "slaves"
        if slaves.exists():
            (self.root / port / "bonding_slave").mkdir()
            slaves.write_text(" ".join([*slaves.read_text().split(), port]) + "\n")

    def upper(self, name: str, lower: str) -> None:
        """A VLAN (or macvlan) on `lower`."""
        self.device(name)
        (self.root / name / f"lower_{lower}").symlink_to(f"../{lower}")
        (self.root / lower / f"upper_{name}").symlink_to(f"../{name}")


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    fake = FakeSysfs(tmp_path)
    fake.device("lo", flags=0x9)  # IFF_UP | IFF_LOOPBACK
    fake.device("eth0")
    fake.device("eth1", flags=DOWN)
    fake.upper("eth0.10", "eth0")
    fake.upper("eth1.20", "eth1")
    fake.device("bond0", kind="bond")
    for member in ("eth2", "eth3"):
        fake.device(member)
        fake.enslave(member, "bond0")
    fake.upper("bond0.5", "bond0")
    fake.device("br0", kind="bridge")
    for port in ("eth4", "veth0"):
        fake.device(port)
        fake.enslave(port, "br0")
    fake.device("eth5")
    fake.upper("eth5.100", "eth5")
    fake.upper("e5.100.200", "eth5.100")  # QinQ: a VLAN on a VLAN
    fake.device("vrf0")
    fake.device("eth6")
    fake.enslave("eth6", "vrf0")
    (tmp_path / "bonding_masters").write_text("bond0\n")  # a file, not a device
    return tmp_path


@pytest.fixture
def links(sysfs: Path) -> dict[str, Link]:
    return current_links(sysfs)


def test_current_links_reads_flags_masters_lowers_and_kinds(links: dict[str, Link]) -> None:
    assert {name: link for name, link in links.items() if not name.startswith("e")} == {
        "lo": Link("lo", 1, up=True, loopback=True, master=None, lowers=(), kind=""),
        "bond0": Link("bond0", 6, True, False, None, ("eth2", "eth3"), "bond"),
        "bond0.5": Link("bond0.5", 9, True, False, None, ("bond0",), ""),
        "br0": Link("br0", 10, True, False, None, ("eth4", "veth0"), "bridge"),
        "vrf0": Link("vrf0", 16, True, False, None, ("eth6",), ""),
        "veth0": Link("veth0", 12, True, False, "br0", (), ""),
    }
    assert links["eth0"] == Link("eth0", 2, True, False, None, (), "")
    assert links["eth1"] == Link("eth1", 3, False, False, None, (), "")
    assert links["eth0.10"] == Link("eth0.10", 4, True, False, None, ("eth0",), "")
    assert links["eth2"] == Link("eth2", 7, True, False, "bond0", (), "")
    assert links["eth4"] == Link("eth4", 11, True, False, "br0", (), "")
    assert links["e5.100.200"] == Link("e5.100.200", 15, True, False, None, ("eth5.100",), "")
    assert sorted(links) == sorted(
        [
            *("lo", "eth0", "eth1", "eth0.10", "eth1.20", "bond0", "eth2", "eth3", "bond0.5"),
            *("br0", "eth4", "veth0", "eth5", "eth5.100", "e5.100.200", "vrf0", "eth6"),
        ]
    )


def test_an_interface_vanishing_mid_read_is_skipped(sysfs: Path) -> None:
    (sysfs / "gone0").symlink_to("../devices/virtual/net/gone0")  # its device already went
    (sysfs / "half0").mkdir()  # unregistering: the directory, its files already gone
    (sysfs / "half0" / "flags").write_text("0x1003\n")
    links = current_links(sysfs)
    assert "gone0" not in links
    assert "half0" not in links
    assert "eth0" in links


@pytest.mark.parametrize("error", [errno.EINVAL, errno.ENODEV])
def test_an_interface_being_unregistered_is_skipped(
    sysfs: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    monkeypatch.setattr("metrics.links._read_link", fails_for("eth0", error))
    assert "eth0" not in current_links(sysfs)
    assert "eth1" in current_links(sysfs)


def test_other_read_errors_are_raised(sysfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("metrics.links._read_link", fails_for("eth0", errno.EACCES))
    with pytest.raises(PermissionError):
        current_links(sysfs)


def fails_for(name: str, error: int) -> Callable[[Path], Link]:
    """links._read_link, but reading `name` fails with `error`."""
    read = links_module._read_link

    def read_link(path: Path) -> Link:
        if path.name == name:
            raise OSError(error, os.strerror(error))
        return read(path)

    return read_link


def test_a_bond_chosen_with_its_members_counts_the_bond(links: dict[str, Link]) -> None:
    assert total_members(["eth3", "bond0", "eth2"], links) == (
        ["bond0"],
        {
            "eth2": "a member of bond bond0, which is chosen",
            "eth3": "a member of bond bond0, which is chosen",
        },
    )


def test_members_without_their_bond_count_each(links: dict[str, Link]) -> None:
    assert total_members(["eth3", "eth2"], links) == (["eth2", "eth3"], {})


def test_a_bridge_chosen_with_its_ports_counts_the_bridge(links: dict[str, Link]) -> None:
    assert total_members(["br0", "eth4", "veth0"], links) == (
        ["br0"],
        {
            "eth4": "a port of bridge br0, which is chosen",
            "veth0": "a port of bridge br0, which is chosen",
        },
    )
    assert total_members(["eth4", "veth0"], links) == (["eth4", "veth0"], {})


def test_a_vlan_counts_unless_its_lower_device_is_chosen(links: dict[str, Link]) -> None:
    assert total_members(["eth0", "eth0.10", "eth1.20"], links) == (
        ["eth0", "eth1.20"],
        {"eth0.10": "VLAN/upper device of eth0, which is chosen"},
    )


def test_a_vlan_on_a_bond_with_members_counts_the_bond_alone(links: dict[str, Link]) -> None:
    assert total_members(["bond0", "bond0.5", "eth2", "eth3"], links) == (
        ["bond0"],
        {
            "bond0.5": "VLAN/upper device of bond0, which is chosen",
            "eth2": "a member of bond bond0, which is chosen",
            "eth3": "a member of bond bond0, which is chosen",
        },
    )
    assert total_members(["bond0.5", "eth2", "eth3"], links) == (
        ["bond0.5", "eth2", "eth3"],
        {},
    )


def test_carrying_passes_on(links: dict[str, Link]) -> None:
    assert total_members(["eth5", "e5.100.200"], links) == (
        ["eth5"],
        {"e5.100.200": "VLAN/upper device of eth5.100, carried by eth5, which is chosen"},
    )


def test_a_master_of_another_kind_carries_its_ports(links: dict[str, Link]) -> None:
    assert total_members(["vrf0", "eth6"], links) == (
        ["vrf0"],
        {"eth6": "enslaved to vrf0, which is chosen"},
    )


def test_an_unknown_name_is_counted(links: dict[str, Link]) -> None:
    assert total_members(["eth0", "gone0"], links) == (["eth0", "gone0"], {})


def test_a_loop_of_carriers_leaves_nobody_out() -> None:
    # The kernel refuses such loops; a torn read might still show one.
    loop = {
        "a": Link("a", 1, True, False, None, ("b",), ""),
        "b": Link("b", 2, True, False, None, ("a",), ""),
        "c": Link("c", 3, True, False, None, ("a",), ""),
    }
    assert total_members(["a", "b"], loop) == (["a", "b"], {})
    assert total_members(["a", "c"], loop) == (
        ["a"],
        {"c": "VLAN/upper device of a, which is chosen"},
    )


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def test_the_real_kernel_shows_a_bridge_and_its_ports(requires_root: None) -> None:
    tag = f"nmlk{os.getpid() % 100000}"
    bridge, port_a, port_b = f"{tag}br", f"{tag}a", f"{tag}b"
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "add", port_a, "type", "veth", "peer", "name", f"{tag}ap")
        ip("link", "add", port_b, "type", "veth", "peer", "name", f"{tag}bp")
        for port in (port_a, port_b):
            ip("link", "set", port, "master", bridge)
        ip("link", "set", port_a, "up")
        links = current_links()
        assert links[bridge] == Link(
            bridge,
            socket.if_nametoindex(bridge),
            up=False,
            loopback=False,
            master=None,
            lowers=(port_a, port_b),
            kind="bridge",
        )
        assert links[port_a] == Link(
            port_a, socket.if_nametoindex(port_a), True, False, bridge, (), ""
        )
        assert (links[port_b].up, links[port_b].master) == (False, bridge)
        assert links[f"{tag}ap"].master is None
        assert links["lo"].loopback
        assert total_members([bridge, port_a, port_b], links) == (
            [bridge],
            {
                port_a: f"a port of bridge {bridge}, which is chosen",
                port_b: f"a port of bridge {bridge}, which is chosen",
            },
        )
    finally:
        for name in (bridge, port_a, port_b):  # a veth's peer goes with it
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
