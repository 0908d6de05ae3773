"""Which interfaces `runsampler` watches: --iface names and patterns, --all, --exclude.

The decisions:
- `--iface` takes a comma-separated list; entries are stripped, empty ones ignored, duplicates
  collapse. An entry containing any of `*?[` is an fnmatch shell pattern ('en*'), else a name.
- What `--iface` names or matches is taken as asked: `--exclude` never removes it (an explicit
  name beats --exclude), so `--iface 'veth*'` watches container veths, and loopback is watched
  only when named or matched.
- `--all` adds every interface that is up, except loopback and those matching `--exclude`; it
  may be combined with `--iface` (the union).
- `--exclude` omitted means DEFAULT_EXCLUDE, `--exclude ''` none; a comma-separated list
  replaces the defaults.
- Only interfaces that are up are chosen, whatever selected them: one that is down is skipped,
  and chosen once it comes up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from metrics.links import Link

# Container, VM and overlay plumbing: its traffic is already counted on the host's uplinks.
DEFAULT_EXCLUDE = (
    "veth*",
    "docker*",
    "br-*",
    "cali*",
    "flannel*",
    "cni*",
    "virbr*",
    "vnet*",
    "tap*",
)
IFNAMSIZ = 16  # a name has at most IFNAMSIZ - 1 = 15 characters
# The host total's interface name (`?iface=all`): the kernel refuses it as an interface's name.
HOST_TOTAL = "all"
PATTERN_CHARS = "*?["


class SelectionError(ValueError):
    """A --iface/--all/--exclude combination that cannot work: a one-line cause and fix."""


@dataclass(frozen=True)
class Choice:
    """What a selection picks among the links present now; the next link event picks again."""

    chosen: tuple[str, ...]  # sorted names to attach now
    skipped: dict[str, str]  # every other link present: why not
    missing: tuple[str, ...]  # exact names given but not present
    # With --all: chosen names that --iface names or matches although --exclude matches them.
    despite_exclude: dict[str, str] = field(default_factory=dict)  # name: the pattern


@dataclass(frozen=True)
class Selection:
    names: tuple[str, ...]  # exact names given to --iface
    patterns: tuple[str, ...]  # --iface entries containing any of *?[
    all: bool  # --all
    exclude: tuple[str, ...]  # fnmatch patterns, applied to what --all adds only

    @classmethod
    def parse(cls, iface: str | None, all: bool, exclude: str | None) -> Selection:
        """The selection the options ask for, or a SelectionError saying what to change."""
        entries = tuple(dict.fromkeys(_split(iface)))
        if not entries and not all:
            raise SelectionError(
                "name interfaces with --iface NAME[,NAME...] or a pattern ('en*'), or use --all"
            )
        for entry in entries:
            check_entry(entry)
        return cls(
            names=tuple(e for e in entries if not _is_pattern(e)),
            patterns=tuple(e for e in entries if _is_pattern(e)),
            all=all,
            exclude=DEFAULT_EXCLUDE if exclude is None else tuple(dict.fromkeys(_split(exclude))),
        )

    @property
    def several(self) -> bool:
        """Whether this may watch more than one interface, and so the sampler writes a total.

        Only one exact name without --all is sure to be one interface.
        """
        return self.all or bool(self.patterns) or len(self.names) != 1

    def choose(self, links: Mapping[str, Link]) -> Choice:
        """The interfaces to attach now among `links`, and why each other one is not."""
        chosen, skipped = [], {}
        for name in sorted(links):
            link = links[name]
            reason = self._why_not(link)
            if reason is None:
                chosen.append(name)
            else:
                skipped[name] = reason
        missing = tuple(name for name in self.names if name not in links)
        despite = {
            name: pattern
            for name in chosen
            if self.all and self._asked(name) and (pattern := self._excluded_by(name)) is not None
        }
        return Choice(
            chosen=tuple(chosen), skipped=skipped, missing=missing, despite_exclude=despite
        )

    def _asked(self, name: str) -> bool:
        """Whether --iface names or matches it."""
        return name in self.names or any(fnmatchcase(name, p) for p in self.patterns)

    def _excluded_by(self, name: str) -> str | None:
        return next((p for p in self.exclude if fnmatchcase(name, p)), None)

    def _why_not(self, link: Link) -> str | None:
        if self._asked(link.name):
            return None if link.up else "down"
        if not self.all:
            return "not selected"
        if link.loopback:
            return "loopback"
        # Excluded before down: it stays out when it comes up.
        excluded_by = self._excluded_by(link.name)
        if excluded_by is not None:
            return f"excluded by --exclude '{excluded_by}'"
        return None if link.up else "down"

    def describe(self) -> str:
        """The selection for the log: "eth0, 'en*', --all except 'veth*', 'docker*'"."""
        parts = [*self.names, *(f"'{p}'" for p in self.patterns)]
        if self.all:
            excluded = ", ".join(f"'{p}'" for p in self.exclude)
            parts.append(f"--all except {excluded}" if excluded else "--all")
        return ", ".join(parts)


def _split(value: str | None) -> list[str]:
    """A comma-separated option's entries, stripped, without empty ones."""
    return [entry.strip() for entry in (value or "").split(",") if entry.strip()]


def _is_pattern(entry: str) -> bool:
    return any(c in entry for c in PATTERN_CHARS)


def check_entry(entry: str) -> None:
    """Refuse what the kernel would never accept as an interface name (dev_valid_name)."""
    if len(entry) > IFNAMSIZ - 1:
        raise SelectionError(
            f"interface names have at most {IFNAMSIZ - 1} characters (IFNAMSIZ): "
            f"'{entry}' has {len(entry)}"
        )
    if entry in (".", "..") or any(c in "/:" or c.isspace() for c in entry):
        raise SelectionError(
            f"'{entry}' is not a valid interface name: names have no '/', ':' or whitespace "
            "and are not '.' or '..' (ip -br link lists them)"
        )
    if entry == HOST_TOTAL:
        raise SelectionError(
            "'all' is not an interface: the kernel refuses the name and netmetrics uses it "
            "for the host total; use --all"
        )
