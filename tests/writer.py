"""A process that writes samples into a scratch database on command, through SamplerRun.record
as the sampler does: a test (or a bench) decides exactly which values are written and when.

    writer = Writer(migrated_env(db), log)
    writer("start", key="a", iface="eth0")
    writer("add", key="a", delta={"rx_total_packets": 3, "rx_total_bytes": 300})
    writer.close()
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.processes import ROOT

# Runs in the writer process (`manage.py shell -c`): one JSON command per stdin line, one reply
# line ("ok <time.time() once done>" or "error ...") per command. A run is this machine's host's
# unless "start" names another ("host": its id, "host_name": its name), as a fleet's samplers
# write.
WRITER = r"""
import json, math, os, sys, time
from datetime import timedelta
from django.db import transaction
from django.utils import timezone
from bpf.classes import ALL_COUNTER_NAMES
from metrics.models import Host, LiveFlows, SamplerRun

runs, totals = {}, {}


def host_of(cmd):
    if "host" not in cmd:
        return Host.objects.local()
    host, _ = Host.objects.update_or_create(id=cmd["host"], defaults={"name": cmd["host_name"]})
    return host


# A sample, and with flows the run's live top-talkers table, in one transaction as the sampler
# writes them; the host total's with the interfaces it sums.
def write(key, delta, when, elapsed, flows=None, members=None):
    cumulative = totals[key]
    for name, value in delta.items():
        cumulative[name] += value
    with transaction.atomic():
        runs[key].record(cumulative, when, elapsed, members=members)
        if flows is not None:
            LiveFlows.objects.update_or_create(
                run=runs[key], defaults={"timestamp": when, "seconds": 40.0, **flows}
            )


def traffic(i, scale):
    # Something that looks like a busy link: a slow swell, a faster ripple, mostly HTTPS.
    wave = 1 + 0.45 * math.sin(i / 23) + 0.2 * math.sin(i / 3.1) + 0.15 * math.sin(i / 1.7)
    rx = int(scale * wave)
    tx = int(rx * (0.22 + 0.06 * math.sin(i / 11)))
    delta = {}
    for d, octets in (("rx", rx), ("tx", tx)):
        parts = {"tcp": 0.84, "udp": 0.12, "icmp": 0.01, "https": 0.66, "http": 0.09,
                 "dns": 0.015, "ipv4": 0.9, "ipv6": 0.1}
        delta[f"{d}_total_bytes"] = octets
        delta[f"{d}_total_packets"] = octets // 900 + 1
        for cls, share in parts.items():
            delta[f"{d}_{cls}_bytes"] = int(octets * share)
            delta[f"{d}_{cls}_packets"] = int(octets * share) // 900
        known = sum(delta[f"{d}_{c}_bytes"] for c in ("tcp", "udp", "icmp"))
        delta[f"{d}_other_bytes"] = octets - known
        delta[f"{d}_other_packets"] = 1
    return delta


print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        now = timezone.now()
        op = cmd["op"]
        if op == "start":
            key = cmd["key"]
            runs[key] = SamplerRun.objects.create(
                host=host_of(cmd), interface=cmd["iface"], mode=cmd.get("mode", "native"),
                egress=cmd.get("egress", True), interval=cmd.get("interval", 1.0), pid=os.getpid(),
                flow_table=cmd.get("flow_table", 16384),
                started_at=now - timedelta(seconds=cmd.get("ago", 0)),
            )
            totals[key] = {name: 0 for name in ALL_COUNTER_NAMES}
        elif op == "add":
            write(cmd["key"], cmd["delta"], now - timedelta(seconds=cmd.get("ago", 0)),
                  cmd.get("elapsed", 1.0), cmd.get("flows"), cmd.get("members"))
        elif op == "seed":
            every, elapsed = cmd["every"], cmd.get("elapsed", cmd["every"])
            ago = cmd["from_ago"]
            i = 0
            while ago >= cmd["to_ago"]:
                delta = {k: v * int(elapsed) for k, v in traffic(i, cmd["scale"]).items()}
                write(cmd["key"], delta, now - timedelta(seconds=ago), elapsed)
                ago -= every
                i += 1
        elif op == "stop":
            runs[cmd["key"]].stop(now - timedelta(seconds=cmd.get("ago", 0)))
        elif op == "host":  # a host known, without a sample yet
            host_of(cmd)
        print(f"ok {time.time()!r}", flush=True)  # just after its commit
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
"""


class Writer:
    """The sample-writing process: each command returns once its rows are committed."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.errors = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-v", "0", "-c", WRITER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self._reply(30)  # "ready"

    def _reply(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.stdout], [], [], max(0, left))
            if not ready:
                raise TimeoutError(f"writer did not answer in {timeout:g} s: {self._tail()}")
            line = self.stdout.readline()
            if not line:
                raise RuntimeError(f"writer exited {self.proc.wait()}: {self._tail()}")
            if line.startswith(("ok", "ready")):
                return line
            if line.startswith("error"):
                raise RuntimeError(f"writer: {line.strip()}")

    def _tail(self) -> str:
        self.errors.flush()
        return self.log.read_text(errors="replace")[-800:]

    def __call__(self, op: str, timeout: float = 30, **args: Any) -> float:
        """Run a command; the wall-clock time (time.time()) just after its rows were
        committed."""
        self.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.stdin.flush()
        return float(self._reply(timeout).split()[1])

    def close(self) -> None:
        self.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errors.close()
