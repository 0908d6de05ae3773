"""Which interfaces --iface, --all and --exclude choose, over hand-made links."""

from __future__ import annotations

import pytest

from metrics.links import Link
from metrics.selection import DEFAULT_EXCLUDE, Choice, Selection, SelectionError


def link(name: str, up: bool = True, loopback: bool = False) -> Link:
    return Link(name, 1, up=up, loopback=loopback, master=None, lowers=(), kind="")


LINKS = {
    item.name: item
    for item in (
        link("lo", loopback=True),
        link("eth0"),
        link("eth1", up=False),
        link("enp3s0"),
        link("wlan0"),
        link("veth123"),
        link("docker0"),
        link("br-abc"),
        link("cali1"),
        link("tap0"),
    )
}
NOT_SELECTED = {name: "not selected" for name in LINKS}


def without(names: tuple[str, ...], reasons: dict[str, str]) -> dict[str, str]:
    return {name: why for name, why in reasons.items() if name not in names}


def test_iface_entries_are_stripped_and_collapse() -> None:
    assert Selection.parse(" eth0, ,eth1,,eth0 ", False, None) == Selection(
        names=("eth0", "eth1"), patterns=(), all=False, exclude=DEFAULT_EXCLUDE
    )


def test_entries_with_wildcards_are_patterns() -> None:
    selection = Selection.parse("en*,eth0,wl?n0,eth[01]", False, None)
    assert selection.names == ("eth0",)
    assert selection.patterns == ("en*", "wl?n0", "eth[01]")


def test_exact_names_are_chosen() -> None:
    assert Selection.parse("eth0,enp3s0", False, None).choose(LINKS) == Choice(
        chosen=("enp3s0", "eth0"),
        skipped=without(("enp3s0", "eth0"), NOT_SELECTED),
        missing=(),
    )


def test_names_not_present_are_missing() -> None:
    choice = Selection.parse("eth9,eth0,eth8", False, None).choose(LINKS)
    assert choice.chosen == ("eth0",)
    assert choice.missing == ("eth9", "eth8")


def test_patterns_choose_what_they_match_that_is_up() -> None:
    assert Selection.parse("e*,wl?n0", False, None).choose(LINKS) == Choice(
        chosen=("enp3s0", "eth0", "wlan0"),
        skipped={**without(("enp3s0", "eth0", "eth1", "wlan0"), NOT_SELECTED), "eth1": "down"},
        missing=(),
    )


def test_all_skips_loopback_down_and_container_plumbing() -> None:
    assert Selection.parse(None, True, None).choose(LINKS) == Choice(
        chosen=("enp3s0", "eth0", "wlan0"),
        skipped={
            "br-abc": "excluded by --exclude 'br-*'",
            "cali1": "excluded by --exclude 'cali*'",
            "docker0": "excluded by --exclude 'docker*'",
            "eth1": "down",
            "lo": "loopback",
            "tap0": "excluded by --exclude 'tap*'",
            "veth123": "excluded by --exclude 'veth*'",
        },
        missing=(),
    )


def test_an_empty_exclude_excludes_nothing() -> None:
    selection = Selection.parse(None, True, "")
    assert selection.exclude == ()
    assert selection.choose(LINKS) == Choice(
        chosen=("br-abc", "cali1", "docker0", "enp3s0", "eth0", "tap0", "veth123", "wlan0"),
        skipped={"eth1": "down", "lo": "loopback"},
        missing=(),
    )


def test_an_exclude_list_replaces_the_defaults() -> None:
    selection = Selection.parse(None, True, " wl*, ,veth*,wl*")
    assert selection.exclude == ("wl*", "veth*")
    assert selection.choose(LINKS) == Choice(
        chosen=("br-abc", "cali1", "docker0", "enp3s0", "eth0", "tap0"),
        skipped={
            "eth1": "down",
            "lo": "loopback",
            "veth123": "excluded by --exclude 'veth*'",
            "wlan0": "excluded by --exclude 'wl*'",
        },
        missing=(),
    )


def test_an_explicit_name_beats_exclude() -> None:
    choice = Selection.parse("veth123,docker0", True, None).choose(LINKS)
    assert choice.chosen == ("docker0", "enp3s0", "eth0", "veth123", "wlan0")
    assert choice.skipped["br-abc"] == "excluded by --exclude 'br-*'"
    assert choice.despite_exclude == {"docker0": "docker*", "veth123": "veth*"}


def test_a_pattern_beats_exclude() -> None:
    assert Selection.parse("veth*", False, None).choose(LINKS).chosen == ("veth123",)
    choice = Selection.parse("veth*", True, None).choose(LINKS)
    assert choice.chosen == ("enp3s0", "eth0", "veth123", "wlan0")
    assert choice.despite_exclude == {"veth123": "veth*"}


def test_exclude_without_all_changes_nothing() -> None:
    choice = Selection.parse("eth0", False, "eth*").choose(LINKS)
    assert (choice.chosen, choice.despite_exclude) == (("eth0",), {})


def test_a_selected_interface_that_is_down_is_skipped_until_it_comes_up() -> None:
    selection = Selection.parse("eth1", False, None)
    assert selection.choose(LINKS).skipped["eth1"] == "down"
    assert selection.choose(LINKS).chosen == ()
    assert selection.choose({**LINKS, "eth1": link("eth1")}).chosen == ("eth1",)


def test_loopback_only_when_named_or_matched() -> None:
    assert Selection.parse(None, True, "").choose(LINKS).skipped["lo"] == "loopback"
    assert Selection.parse("lo", False, None).choose(LINKS).chosen == ("lo",)
    assert Selection.parse("l*", True, None).choose(LINKS).chosen == (
        "enp3s0",
        "eth0",
        "lo",
        "wlan0",
    )


@pytest.mark.parametrize(
    ("iface", "all", "several"),
    [
        ("eth0", False, False),
        ("eth0,eth0", False, False),
        ("eth0,eth1", False, True),
        ("en*", False, True),
        ("eth0,en*", False, True),
        ("eth0", True, True),
        (None, True, True),
    ],
)
def test_several(iface: str | None, all: bool, several: bool) -> None:
    assert Selection.parse(iface, all, None).several is several


def test_describe() -> None:
    assert Selection.parse("eth0,en*,eth1", True, None).describe() == (
        "eth0, eth1, 'en*', --all except 'veth*', 'docker*', 'br-*', 'cali*', 'flannel*', "
        "'cni*', 'virbr*', 'vnet*', 'tap*'"
    )
    assert Selection.parse(None, True, "").describe() == "--all"
    assert Selection.parse("eth0", False, "veth*").describe() == "eth0"
    assert Selection.parse("en*", False, None).describe() == "'en*'"


def test_fifteen_characters_are_a_name() -> None:
    assert Selection.parse("abcdefghijklmno", False, None).names == ("abcdefghijklmno",)


NOTHING = "name interfaces with --iface NAME[,NAME...] or a pattern ('en*'), or use --all"


def invalid(name: str) -> str:
    return (
        f"'{name}' is not a valid interface name: names have no '/', ':' or whitespace "
        "and are not '.' or '..' (ip -br link lists them)"
    )


@pytest.mark.parametrize(
    ("iface", "all", "message"),
    [
        (None, False, NOTHING),
        ("", False, NOTHING),
        (" , ,", False, NOTHING),
        (
            "abcdefghijklmnop",
            False,
            "interface names have at most 15 characters (IFNAMSIZ): 'abcdefghijklmnop' has 16",
        ),
        (
            "eth0,abcdefghijklmno*",
            True,
            "interface names have at most 15 characters (IFNAMSIZ): 'abcdefghijklmno*' has 16",
        ),
        ("eth0/1", False, invalid("eth0/1")),
        ("eth0:1", False, invalid("eth0:1")),
        ("eth 0", False, invalid("eth 0")),
        ("eth\t*", False, invalid("eth\t*")),
        (".", False, invalid(".")),
        ("..", True, invalid("..")),
        (
            "eth0,all",
            False,
            "'all' is not an interface: the kernel refuses the name and netmetrics uses it "
            "for the host total; use --all",
        ),
    ],
)
def test_errors(iface: str | None, all: bool, message: str) -> None:
    with pytest.raises(SelectionError) as raised:
        Selection.parse(iface, all, None)
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)
