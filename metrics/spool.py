"""The sampler's spool: ticks it could not write to the central database, kept in a local
SQLite file until the centre answers again (Spool), and written out then (WrittenRuns; the
sampler decides when: metrics/sampler.py).

Each spooled tick holds, per run, the kernel's cumulative counters, the tick's time and the
seconds since that run's previous tick. Written later through the same SamplerRun.record, in
order, they give exactly the samples and rollups that writing on time would have: each delta
is taken against the run's totals as stored, so nothing is counted twice or lost. A run is
named by its kernel token (made when it started), with what it takes to create it, so that
runs started while the centre was away (or by a sampler since restarted) are created when
their first tick is written.

The spool is bounded: past `limit` ticks, the oldest tick is folded into the next one. Its
counts are kept, since the next tick's counters are cumulative; only the per-second detail of
that interval is lost, and each fold is logged with the interval it merged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bpf.classes import ALL_COUNTER_NAMES
from metrics.models import Host, Recording, SamplerRun

log = logging.getLogger("netmetrics.sampler")

# The attributes of a run that its first spooled tick creates it with.
RUN_FIELDS = ("interface", "mode", "egress", "interval", "flow_table", "pid", "started_at")


@dataclass(frozen=True)
class Entry:
    """One run's part of a spooled tick."""

    token: int  # SamplerRun.kernel_token
    run: dict[str, Any]  # RUN_FIELDS, started_at as ISO 8601
    timestamp: str  # ISO 8601, the tick's end
    elapsed: float
    counters: list[int]  # cumulative, in ALL_COUNTER_NAMES' order
    members: list[str] | None  # the host total's
    stop: bool  # the run's last tick

    def counter_values(self) -> dict[str, int]:
        return dict(zip(ALL_COUNTER_NAMES, self.counters, strict=True))

    @property
    def end(self) -> datetime:
        return datetime.fromisoformat(self.timestamp)


@dataclass(frozen=True)
class Tick:
    seq: int
    entries: list[Entry]


def spooled(rec: Recording, timestamp: datetime, stop: bool) -> Entry:
    """A run's part of a tick, as the spool keeps it."""
    run = rec.run
    assert run.kernel_token, "runs the sampler starts have a kernel token"
    fields = {name: getattr(run, name) for name in RUN_FIELDS}
    fields["started_at"] = run.started_at.isoformat()
    return Entry(
        token=run.kernel_token,
        run=fields,
        timestamp=timestamp.isoformat(),
        elapsed=rec.elapsed,
        counters=[rec.counters[name] for name in ALL_COUNTER_NAMES],
        members=rec.members,
        stop=stop,
    )


def began(tick: Tick, token: int) -> str:
    """When the run's entry in tick began: its end less its seconds (ISO 8601)."""
    entry = next(e for e in tick.entries if e.token == token)
    return (entry.end - timedelta(seconds=entry.elapsed)).isoformat()


class Spool:
    """Ticks waiting for the database, oldest first, in the SQLite file at `path`."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tick (seq INTEGER PRIMARY KEY, entries TEXT NOT NULL)"
        )
        # Per run, the interval whose ticks were folded: from the end of the first folded
        # tick's predecessor (its start) to the end of the last one folded.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS folded "
            "(token INTEGER PRIMARY KEY, interface TEXT, since TEXT, until TEXT)"
        )
        [(self._count,)] = self._db.execute("SELECT count(*) FROM tick")
        self._full = False

    def __len__(self) -> int:
        return self._count

    def add(self, entries: list[Entry]) -> None:
        """Keep one tick; fold the oldest into the next while more than `limit` are kept."""
        body = json.dumps([asdict(entry) for entry in entries])
        with self._db:
            self._db.execute("INSERT INTO tick (entries) VALUES (?)", (body,))
            self._count += 1
            while self._count > self.limit:
                self._fold_oldest()

    def oldest(self, count: int) -> list[Tick]:
        rows = self._db.execute("SELECT seq, entries FROM tick ORDER BY seq LIMIT ?", (count,))
        return [Tick(seq, [Entry(**entry) for entry in json.loads(body)]) for seq, body in rows]

    def remove(self, ticks: list[Tick]) -> None:
        """Forget ticks that are written."""
        with self._db:
            self._db.executemany("DELETE FROM tick WHERE seq = ?", [(t.seq,) for t in ticks])
        [(self._count,)] = self._db.execute("SELECT count(*) FROM tick")

    def _fold_oldest(self) -> None:
        """Fold the oldest tick into the next: a run in both keeps the next tick's counters
        over both intervals; a run only in the oldest keeps its entry in the next tick."""
        first, second = self.oldest(2)
        later = {entry.token: entry for entry in second.entries}
        folded = [
            Entry(**{**asdict(later[e.token]), "elapsed": later[e.token].elapsed + e.elapsed})
            for e in first.entries
            if e.token in later
        ]
        kept = [e for e in first.entries if e.token not in later]
        tokens = {e.token for e in folded}
        rest = [e for e in second.entries if e.token not in tokens]
        self._db.execute(
            "UPDATE tick SET entries = ? WHERE seq = ?",
            (json.dumps([asdict(e) for e in (*kept, *folded, *rest)]), second.seq),
        )
        self._db.execute("DELETE FROM tick WHERE seq = ?", (first.seq,))
        self._count -= 1
        for entry in folded:
            self._db.execute(
                "INSERT INTO folded VALUES (?, ?, ?, ?) ON CONFLICT (token) DO UPDATE "
                "SET until = excluded.until",
                (
                    entry.token,
                    entry.run["interface"],
                    began(first, entry.token),
                    entry.timestamp,
                ),
            )
        if not self._full:
            self._full = True
            log.warning(
                "spool full (%d ticks): the oldest ticks are folded into one longer interval "
                "each; their counts are kept, their per-second detail is not",
                self.limit,
            )

    def folded(self) -> list[tuple[str, str, str]]:
        """The intervals whose per-second detail was folded away: (interface, from, until)."""
        return list(self._db.execute("SELECT interface, since, until FROM folded ORDER BY since"))

    def forget_folded(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM folded")
        self._full = False

    def __str__(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self._db.close()


class WrittenRuns:
    """Writes spooled ticks to the database, and keeps the runs they were written to, as
    written, until forget(): the runs of consecutive batches, read once."""

    def __init__(self) -> None:
        self._runs: dict[int, SamplerRun] = {}  # by kernel token

    def write(self, host: Host, entries: list[Entry]) -> None:
        """A spooled tick's entries, a record() per moment (a folded tick's kept entries have
        their own). An entry no later than its run's last sample is written already (a crash
        between the commit and the spool's delete): it is skipped, never counted twice."""
        by_moment: dict[datetime, list[tuple[SamplerRun, Entry]]] = {}
        for entry in entries:
            run = self._run(host, entry)
            if run.last_sample is None or entry.end > run.last_sample.timestamp:
                by_moment.setdefault(entry.end, []).append((run, entry))
        for moment, written in sorted(by_moment.items()):
            recordings = [
                Recording(run, entry.counter_values(), entry.elapsed, entry.members)
                for run, entry in written
            ]
            SamplerRun.objects.record(recordings, moment)
            for run, entry in written:
                if entry.stop:
                    run.stop(moment)

    def stored(self, run: SamplerRun) -> SamplerRun | None:
        """`run` as the database has it now (it may never have been saved in this process);
        None when the database has no run of its kernel token."""
        token = run.kernel_token
        if token in self._runs:
            return self._runs[token]
        runs = SamplerRun.objects.filter(host_id=run.host_id, kernel_token=token)
        return runs.select_related("last_sample").first() if token else None

    def forget(self) -> None:
        self._runs.clear()

    def _run(self, host: Host, entry: Entry) -> SamplerRun:
        """The run a spooled entry belongs to, as written so far; made by its first entry."""
        run = self._runs.get(entry.token)
        if run is None:
            runs = SamplerRun.objects.filter(host=host, kernel_token=entry.token)
            run = runs.select_related("last_sample").first()
            if run is None:
                fields = {
                    **entry.run,
                    "started_at": datetime.fromisoformat(entry.run["started_at"]),
                }
                run = SamplerRun.objects.create(host=host, kernel_token=entry.token, **fields)
            self._runs[entry.token] = run
        return run
