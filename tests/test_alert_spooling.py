"""Alert rules and the spool: the ticks a central database did not take are not evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import OperationalError

from alerts.evaluator import AlertEvaluator
from alerts.models import AlertRule
from metrics.sampler import Sampler
from metrics.spool import Spool
from tests.samples import at
from tests.test_sampler import FakeKernel
from tests.test_spool import counted_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_nothing_is_evaluated_while_the_sampler_spools(tmp_path: Path, monkeypatch) -> None:
    """The central database is away: the ticks go to the spool, and no rule is evaluated on
    them, then or when they are written."""
    now = [100.0]
    monkeypatch.setattr("metrics.sampler.time.monotonic", lambda: now[0])
    monkeypatch.setattr("metrics.sampler.timezone.now", lambda: at(now[0] - 100.0))
    AlertRule.objects.create(name="busy", metric="rx_bps", level=1, clear_level=1)
    spool = Spool(tmp_path / "spool.sqlite3", limit=1000)
    run = counted_run()
    evaluated: list[int] = []
    evaluator = AlertEvaluator(run.host_id)
    monkeypatch.setattr(evaluator, "evaluate", lambda samples: evaluated.append(len(samples)))
    sampler = Sampler(FakeKernel(), interval=1.0, spool=spool, rules=evaluator)
    sampler.watch(run, started=100.0)

    def refuse(*args: object) -> None:
        raise OperationalError("connection refused")

    with monkeypatch.context() as down:
        down.setattr("metrics.models.insert_rows", refuse)
        now[0] += 1
        sampler.tick()
    now[0] += 1
    sampler.tick()  # spooled too: the spool holds a tick
    assert (len(spool), evaluated) == (2, [])
    sampler.catch_up(float("inf"))
    assert (len(spool), evaluated) == (0, [])
    now[0] += 1
    sampler.tick()
    assert evaluated == [1]
