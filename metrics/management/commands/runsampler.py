"""`manage.py runsampler`: count interfaces' traffic in the kernel, one Sample per tick each."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import os
import select
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, InterfaceError, OperationalError

from alerts.evaluator import AlertEvaluator
from bpf import capabilities
from bpf.hooks import detach_leftovers
from bpf.iface_lock import InterfaceLock
from bpf.loader import MODES, PreflightError, TrafficCounter, check_interface, preflight
from bpf.pins import forget_kept, holding_kept, kept_directory, opened
from bpf.program import DEFAULT_FLOW_TABLE
from metrics.link_events import LinkEvents
from metrics.links import current_links
from metrics.models import HOST_TOTAL, Host
from metrics.sampler import Sampler, StatusLog
from metrics.selection import DEFAULT_EXCLUDE, Selection, SelectionError
from metrics.spool import Spool
from metrics.watcher import InterfaceWatcher, open_run

log = logging.getLogger("netmetrics.sampler")
T = TypeVar("T")

# 1M entries: about 100 MB of kernel memory, and a harvest the sampler cannot finish in a tick.
MAX_FLOW_TABLE = 1 << 20


class Command(BaseCommand):
    help = (
        "Attach netmetrics' XDP and TC programs to interfaces and record a sample per tick for "
        "each, and for the host total."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--iface",
            help="interfaces to measure: names and shell patterns, comma-separated "
            "(eth0,eth1 or 'en*'); a name or pattern is taken even if --exclude matches it",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="measure every interface that is up, but loopback and --exclude",
        )
        parser.add_argument(
            "--exclude",
            help="patterns --all leaves out, comma-separated; '' for none (default: "
            f"{','.join(DEFAULT_EXCLUDE)})",
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds between samples (default 1)"
        )
        parser.add_argument(
            "--mode",
            choices=MODES,
            default="auto",
            help="ingress: native (driver XDP), skb (TC ingress classifier), "
            "or auto (native where it pays, else skb), on each interface",
        )
        parser.add_argument(
            "--no-egress", action="store_true", help="measure ingress only (no TC program)"
        )
        parser.add_argument(
            "--no-flows",
            action="store_true",
            help="count no flows (top talkers): the programs are built without the flow table",
        )
        parser.add_argument(
            "--no-tcp-health",
            action="store_true",
            help="attach no TCP tracepoints: no retransmit or RTT figures, a few percent more "
            "TCP throughput on a busy host",
        )
        parser.add_argument(
            "--persist",
            action="store_true",
            help="when stopped, leave the programs attached and counting (pinned in "
            "/sys/fs/bpf/netmetrics): the next start continues every run where it left off, "
            "losing nothing; the service runs with it",
        )
        parser.add_argument(
            "--detach",
            metavar="IFACES",
            help="remove what a sampler left attached and counting on these interfaces (names "
            "and patterns; '*' for all), and the pins once nothing is counted; then exit",
        )
        parser.add_argument(
            "--flow-table",
            type=int,
            default=DEFAULT_FLOW_TABLE,
            help=f"entries of the kernel's flow table, the most flows one interval can hold, "
            f"of all interfaces (default {DEFAULT_FLOW_TABLE})",
        )

    def handle(self, *args: Any, interval: float, mode: str, **options: Any) -> None:
        if options["detach"] is not None:
            try:
                detach_kept(options["detach"])
            except PreflightError as exc:
                raise CommandError(str(exc)) from None
            return
        if not 0.1 <= interval <= 3600:
            raise CommandError("--interval must be between 0.1 and 3600 seconds")
        flow_table = 0 if options["no_flows"] else options["flow_table"]
        if not options["no_flows"] and not 16 <= flow_table <= MAX_FLOW_TABLE:
            raise CommandError(
                f"--flow-table must be between 16 and {MAX_FLOW_TABLE} entries (or use --no-flows)"
            )
        try:
            selection = Selection.parse(options["iface"], options["all"], options["exclude"])
        except SelectionError as exc:
            raise CommandError(str(exc)) from None
        self.stopping = False
        self._wake_read, self._wake = os.pipe()
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

        counter = TrafficCounter(
            mode=mode,
            egress=not options["no_egress"],
            app_ports=settings.NETMETRICS_APP_PORTS,
            flow_table=flow_table,
            tcp_health=not options["no_tcp_health"],
            persist=options["persist"],
        )
        try:
            preflight()
            if not selection.patterns and not selection.all:
                for name in selection.names:  # names alone: each must be there, and up
                    check_interface(name)
            spool = _spool()
            host, answered = _local_host(spool)  # before a compile that takes seconds
            if spool is not None and answered:
                # What an earlier sampler spooled goes first: the runs it continues are then
                # as it left them.
                Sampler(counter, interval, spool=spool).catch_up(time.monotonic() + 60)
            # Subscribed before the first look at the links: no change falls between the two.
            with LinkEvents() as events:
                links = current_links()
                with counter, contextlib.ExitStack() as held:
                    total, started = None, None
                    if selection.several:
                        # One host total per host: two would add into the same rollups.
                        lock = InterfaceLock(HOST_TOTAL)
                        lock.acquire()
                        held.callback(lock.release)
                        offline = not answered or (spool is not None and len(spool) > 0)
                        total, started = _database(
                            lambda: open_run(
                                host, HOST_TOTAL, "host", counter, interval, spool, offline
                            )
                        )
                    top = None if not flow_table else settings.NETMETRICS_FLOW_TOP
                    rules = AlertEvaluator(host.pk)
                    sampler = Sampler(
                        counter,
                        interval,
                        top,
                        total,
                        started,
                        spool,
                        rules,
                        prune_slot=host.prune_slot(Sampler.PRUNE_EVERY),
                    )
                    watcher = InterfaceWatcher(host, counter, sampler, selection)
                    # Names alone: each attaches, or the sampler says why and stops.
                    watcher.sync(links, strict=not selection.patterns and not selection.all)
                    counter.drop_others()
                    log_choice(selection, links)  # after the attach errors, which end it
                    # A fleet's samplers each on their own phase of the second; one host's
                    # on the whole second, as its samples have always been.
                    phase = host.tick_phase(interval) if _central() else 0.0
                    log.info(
                        "host %s (id %s): sampling every %gs at +%.3fs, egress %s, flows %s, "
                        "host total %s",
                        host.name,
                        host.pk,
                        interval,
                        phase,
                        "on" if counter.egress else "off",
                        f"in a table of {flow_table}" if flow_table else "off",
                        f"as iface={HOST_TOTAL}" if total else "off (one interface)",
                    )
                    self.loop(watcher, events, phase)
        except PreflightError as exc:
            raise CommandError(str(exc)) from None
        log.info("stopped sampling")

    def on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        os.write(self._wake, b"x")  # ends the loop's wait at once

    def loop(self, watcher: InterfaceWatcher, events: LinkEvents, phase: float) -> None:
        """Tick `phase` seconds after each wall-clock multiple of the interval until
        SIGINT/SIGTERM, then flush; between ticks, follow the links as netlink reports their
        changes."""
        sampler = watcher.sampler
        status = StatusLog(sampler)
        deadline = _next_boundary(sampler.interval, phase)
        while not self.stopping:
            ready, _, _ = select.select(
                [events.fileno(), self._wake_read], [], [], max(0.0, deadline - time.time())
            )
            if self.stopping:
                break
            if events.fileno() in ready and events.drain():
                watcher.sync()
            if time.time() >= deadline:
                status.add(sampler.tick())
                deadline = _next_boundary(sampler.interval, phase)
                # Spooled ticks in the time left before the next one.
                sampler.catch_up(time.monotonic() + 0.8 * (deadline - time.time()))
        sampler.flush()
        if sampler.spool is not None and sampler.spooling:
            sampler.catch_up(time.monotonic() + 5)
            if sampler.spooling:
                log.warning(
                    "%d ticks stay in the spool %s: the next start writes them",
                    len(sampler.spool),
                    sampler.spool,
                )


def log_choice(selection: Selection, links: dict) -> None:
    """The log's first lines: which interfaces, and why not the others."""
    choice = selection.choose(links)
    log.info(
        "interfaces: %s chooses %s",
        selection.describe(),
        ", ".join(choice.chosen) or "none yet: waiting for one",
    )
    for name, pattern in choice.despite_exclude.items():
        log.info(
            "counting %s although --exclude '%s' matches it: --iface asks for it", name, pattern
        )
    for name, reason in sorted(choice.skipped.items()):
        log.info("not counting %s: %s", name, reason)


def detach_kept(spec: str) -> None:
    """--detach: remove netmetrics' hooks from the interfaces `spec` matches (this network
    namespace's), their kept counters, and the pins once no interface is counted."""
    patterns = [part for part in spec.split(",") if part]
    if not patterns:
        raise PreflightError("--detach needs interface names or patterns ('*' for all)")
    lacking = capabilities.missing()
    if lacking:
        raise PreflightError(f"--detach needs root, or {', '.join(lacking)}")
    chosen = {
        ifindex: name
        for ifindex, name in socket.if_nameindex()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    held = set()
    with holding_kept(), opened(kept_directory()) as kept:
        for ifindex, name in chosen.items():
            try:
                detach_leftovers(ifindex)
            except PreflightError as exc:  # a live sampler's, not a stopped one's
                if name in patterns:
                    raise
                log.warning("left %s alone: %s", name, exc)
                held.add(ifindex)
        removed = forget_kept(kept, lambda ifindex: ifindex in chosen and ifindex not in held)
    log.info(
        "detached %s; %s",
        ", ".join(n for i, n in chosen.items() if i not in held) or "nothing",
        "pins removed" if removed else "the pins stay for the interfaces still counted",
    )


def _database(query: Callable[[], T]) -> T:
    """Run a query; a database error is the user's one line (cause and fix), not a traceback."""
    try:
        return query()
    except DatabaseError as exc:
        raise CommandError(_database_error(exc)) from None


def _database_error(exc: DatabaseError) -> str:
    """A database error as one line: the cause and the fix."""
    # PostgreSQL's messages go on over more lines (LINE 1: ..., a caret): the first says it.
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    check = (
        "check DATABASE_URL and the role's rights"
        if _central()
        else "check NETMETRICS_DB and its permissions"
    )
    return (
        f"cannot write the database {settings.DATABASES['default']['NAME']}: {cause} "
        f"(run 'make setup' for migrations; {check})"
    )


def _central() -> bool:
    """Whether the database is a central PostgreSQL (DATABASE_URL), not this host's file."""
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _spool() -> Spool | None:
    """The spool for ticks a central database does not take; none for a local SQLite file,
    whose failures (a lock, a full disk) the next tick's longer sample covers."""
    if not _central():
        return None
    path = settings.NETMETRICS_SPOOL
    try:
        return Spool(path, settings.NETMETRICS_SPOOL_TICKS)
    except (OSError, sqlite3.Error) as exc:
        raise CommandError(
            f"cannot open the spool {path}: {exc} (NETMETRICS_SPOOL names a file in a "
            "directory this user may write)"
        ) from None


def _local_host(spool: Spool | None) -> tuple[Host, bool]:
    """This host's row, and whether the database answered. A database that does not answer
    (down, unreachable, a wrong password: OperationalError) is, with a spool, a one-line
    warning, and the sampler counts into the spool until it answers. Any other error (no
    tables: migrations not applied; a role without rights) ends the command in one line: the
    spool would wait for what only the operator can do."""
    try:
        return Host.objects.local(), True
    except DatabaseError as exc:
        if spool is None or not isinstance(exc, OperationalError | InterfaceError):
            raise CommandError(_database_error(exc)) from None
        log.warning("%s; counting into the spool %s until it answers", _database_error(exc), spool)
        return Host(id=settings.NETMETRICS_HOST_ID, name=settings.NETMETRICS_HOST_NAME), False


def _next_boundary(interval: float, phase: float) -> float:
    """The next wall-clock multiple of the interval, plus the phase."""
    return (math.floor((time.time() - phase) / interval) + 1) * interval + phase
