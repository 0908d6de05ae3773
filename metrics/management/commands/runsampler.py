"""`manage.py runsampler`: count an interface's traffic in the kernel, one Sample per tick."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from bpf.loader import MODES, PreflightError, TrafficCounter, preflight
from bpf.program import DEFAULT_FLOW_TABLE
from metrics.flows import FlowTracker
from metrics.models import SamplerRun
from metrics.sampler import Sampler, StatusLog

log = logging.getLogger("netmetrics.sampler")
T = TypeVar("T")

# 1M entries: about 100 MB of kernel memory, and a harvest the sampler cannot finish in a tick.
MAX_FLOW_TABLE = 1 << 20


class Command(BaseCommand):
    help = "Attach netmetrics' XDP and TC programs to an interface and record a sample per tick."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--iface", required=True, help="interface to measure, e.g. eth0")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds between samples (default 1)"
        )
        parser.add_argument(
            "--mode",
            choices=MODES,
            default="auto",
            help="ingress: native (driver XDP), skb (TC ingress classifier), "
            "or auto (native where it pays, else skb)",
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
            "--flow-table",
            type=int,
            default=DEFAULT_FLOW_TABLE,
            help=f"entries of the kernel's flow table, the most flows one interval can hold "
            f"(default {DEFAULT_FLOW_TABLE})",
        )

    def handle(self, *args: Any, iface: str, interval: float, mode: str, **options: Any) -> None:
        if not 0.1 <= interval <= 3600:
            raise CommandError("--interval must be between 0.1 and 3600 seconds")
        flow_table = 0 if options["no_flows"] else options["flow_table"]
        if not options["no_flows"] and not 16 <= flow_table <= MAX_FLOW_TABLE:
            raise CommandError(
                f"--flow-table must be between 16 and {MAX_FLOW_TABLE} entries (or use --no-flows)"
            )
        self.stopping = threading.Event()
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

        counter = TrafficCounter(
            iface,
            mode=mode,
            egress=not options["no_egress"],
            app_ports=settings.NETMETRICS_APP_PORTS,
            flow_table=flow_table,
            tcp_health=not options["no_tcp_health"],
        )
        try:
            preflight(iface)
            _database(SamplerRun.objects.exists)  # before a compile that takes seconds
            with counter:
                attached = time.monotonic()
                run = _database(lambda: start_run(counter, interval))
                log.info(
                    "sampling %s every %gs (%s mode), egress %s, flows %s",
                    iface,
                    interval,
                    run.mode,
                    "on" if run.egress else "off",
                    f"in a table of {flow_table}" if flow_table else "off",
                )
                flows = None
                if flow_table:
                    top = settings.NETMETRICS_FLOW_TOP
                    flows = FlowTracker(run, counter.harvest_flows, top, interval)
                self.loop(Sampler(run, counter.read, attached, flows), interval)
        except PreflightError as exc:
            raise CommandError(str(exc)) from None
        log.info("stopped sampling %s; programs detached", iface)

    def on_signal(self, signum: int, frame: object) -> None:
        self.stopping.set()

    def loop(self, sampler: Sampler, interval: float) -> None:
        """Tick on wall-clock multiples of the interval until SIGINT/SIGTERM, then flush."""
        status = StatusLog(sampler.run)
        while not self.stopping.wait(_until_next_boundary(interval)):
            status.add(sampler.tick(), sampler.failed_writes)
        sampler.flush()
        try:
            sampler.run.stop(timezone.now())
        except DatabaseError as exc:
            log.warning("%s: could not mark the run stopped (%s)", sampler.run.interface, exc)


def start_run(counter: TrafficCounter, interval: float) -> SamplerRun:
    """The run's row, once the programs are attached and the mode they got is known."""
    assert counter.attached_mode is not None
    return SamplerRun.objects.create(
        interface=counter.iface,
        mode=counter.attached_mode,
        egress=counter.egress,
        interval=interval,
        flow_table=counter.flow_table,
        pid=os.getpid(),
        started_at=timezone.now(),
    )


def _database(query: Callable[[], T]) -> T:
    """Run a query; a database error is the user's one line (cause and fix), not a traceback."""
    try:
        return query()
    except DatabaseError as exc:
        raise CommandError(
            f"cannot write the database {settings.DATABASES['default']['NAME']}: {exc} "
            "(run 'make setup' for migrations; check NETMETRICS_DB and its permissions)"
        ) from None


def _until_next_boundary(interval: float) -> float:
    now = time.time()
    return (math.floor(now / interval) + 1) * interval - now
