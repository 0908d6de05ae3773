"""GET /api/stats/usage: totals per day, month and billing cycle, exact against sums taken here
from the generated samples, over a history in Europe/Paris that crosses month boundaries, both
of its DST changes (a 25-hour 2026-10-25, a 23-hour 2027-03-28) and cycles starting on the 15th;
the projection at today's pace, the quota, 400s; the plan's admin."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from metrics.models import Host, SamplerRun, Series
from tests.samples import start_run, write_samples
from usage.models import InterfacePlan
from usage.report import projection
from usage.totals import Carried, carried, carried_each

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
FIRST = datetime(2026, 10, 10, tzinfo=UTC)
NOW = datetime(2027, 4, 3, 10, 17, 33, tzinfo=PARIS).astimezone(UTC)  # 08:17:33 UTC
DAY = timedelta(days=1)
# Around now and a day before (the pace's window edges), a sample every 7 s: the edges are
# read from the raw and minute tiers; elsewhere one every 20 minutes.
DENSE = [
    (NOW - DAY - timedelta(minutes=9), NOW - DAY + timedelta(minutes=9)),
    (NOW - timedelta(minutes=9), NOW),
]
QUOTA = 3_000_000


def _bytes(moment: datetime) -> tuple[int, int]:
    """Traffic that differs from minute to minute, so a period off by an hour sums differently."""
    minute = int(moment.timestamp()) // 60
    return 1000 + minute % 997 * 3, 50 + minute % 13


def _starts() -> list[datetime]:
    regular = [
        FIRST + timedelta(minutes=20 * i)
        for i in range(int((NOW - FIRST) / timedelta(minutes=20)) + 1)
    ]
    starts = [t for t in regular if t < NOW and not any(lo <= t < hi for lo, hi in DENSE)]
    for lo, hi in DENSE:
        starts += [
            lo + timedelta(seconds=7 * i) for i in range(int((hi - lo).total_seconds()) // 7)
        ]
    return sorted(starts)


ROWS = [
    (start, 7.0 if any(lo <= start < hi for lo, hi in DENSE) else 1200.0, *_bytes(start))
    for start in _starts()
]


def expected(since: datetime, until: datetime) -> tuple[int, int]:
    """rx and tx bytes of the generated samples that start in [since, until)."""
    inside = [(rx, tx) for start, _, rx, tx in ROWS if since <= start < until]
    return sum(rx for rx, _ in inside), sum(tx for _, tx in inside)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=PARIS).astimezone(UTC)


def consecutive(firsts: list[date], after: date) -> list[tuple[date, datetime, datetime]]:
    """Periods starting on each of firsts, the last ending before after."""
    ends = [*firsts[1:], after]
    return [
        (first, midnight(first), midnight(end)) for first, end in zip(firsts, ends, strict=True)
    ]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def written(django_db_setup, django_db_blocker) -> Iterator[SamplerRun]:
    """eth0's history (ROWS), and eth1's that must not count in it: written once for the module
    (months of rows take seconds), deleted after it."""
    with django_db_blocker.unblock():
        run = start_run("eth0", started_at=FIRST)
        write_samples(run, ROWS)
        other = start_run("eth1", started_at=FIRST)
        write_samples(other, [(start, elapsed, 7, 7) for start, elapsed, _, _ in ROWS[::5]])
        yield run
        Host.objects.all().delete()


@pytest.fixture
def history(written: SamplerRun, settings, monkeypatch) -> SamplerRun:
    """The history, at NOW, in Europe/Paris."""
    settings.NETMETRICS_TIME_ZONE = "Europe/Paris"
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return written


def assert_rows(rows: list[dict], bounds: list[tuple[date, datetime, datetime]]) -> None:
    assert [(row["first_day"], row["start"], row["end"]) for row in rows] == [
        (day.isoformat(), iso(lo), iso(hi)) for day, lo, hi in bounds
    ]
    for row, (_, lo, hi) in zip(rows, bounds, strict=True):
        rx, tx = expected(lo, hi)
        assert (row["rx_bytes"], row["tx_bytes"], row["total_bytes"]) == (rx, tx, rx + tx), row


def test_days_are_exact_and_dst_days_have_25_and_23_hours(api, history) -> None:
    days = [date(2026, 10, 9) + timedelta(days=i) for i in range(177)]  # to 2027-04-03, today
    body = api("/api/stats/usage?iface=eth0&by=day&count=177")
    assert (body["iface"], body["by"], body["time_zone"]) == ("eth0", "day", "Europe/Paris")
    assert_rows(body["periods"], [(day, midnight(day), midnight(day + DAY)) for day in days])
    by_day = {row["first_day"]: row for row in body["periods"]}
    assert by_day["2026-10-09"]["total_bytes"] == 0  # before the history
    assert (by_day["2026-10-25"]["start"], by_day["2026-10-25"]["end"]) == (
        "2026-10-24T22:00:00Z",
        "2026-10-25T23:00:00Z",
    )
    assert (by_day["2027-03-28"]["start"], by_day["2027-03-28"]["end"]) == (
        "2027-03-27T23:00:00Z",
        "2027-03-28T22:00:00Z",
    )
    # The 25th hour is counted, and the 23-hour day stops at its midnight.
    autumn, spring = datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2027, 3, 27, 23, tzinfo=UTC)
    hours = timedelta(hours=1)
    assert by_day["2026-10-25"]["rx_bytes"] == expected(autumn, autumn + 25 * hours)[0]
    assert expected(autumn, autumn + 25 * hours) != expected(autumn, autumn + 24 * hours)
    assert by_day["2027-03-28"]["rx_bytes"] == expected(spring, spring + 23 * hours)[0]
    assert expected(spring, spring + 23 * hours) != expected(spring, spring + 24 * hours)


def test_months_are_exact(api, history) -> None:
    firsts = [date(2026, m, 1) for m in (9, 10, 11, 12)] + [date(2027, m, 1) for m in (1, 2, 3, 4)]
    bounds = consecutive(firsts, date(2027, 5, 1))
    body = api("/api/stats/usage?iface=eth0&by=month&count=8")
    assert_rows(body["periods"], bounds)
    assert body["periods"][0]["total_bytes"] == 0
    assert (body["cycle_start_day"], body["quota"]) == (1, None)


def test_cycles_start_on_the_15th_with_the_quota(api, history) -> None:
    InterfacePlan.objects.create(
        host=history.host,
        interface="eth0",
        cycle_start_day=15,
        quota_bytes=QUOTA,
        quota_direction="rx",
    )
    firsts = [date(2026, m, 15) for m in (9, 10, 11, 12)] + [date(2027, m, 15) for m in (1, 2, 3)]
    bounds = consecutive(firsts, date(2027, 4, 15))
    body = api("/api/stats/usage?iface=eth0&by=cycle&count=7")
    assert (body["cycle_start_day"], body["quota"]) == (15, {"bytes": QUOTA, "direction": "rx"})
    assert_rows(body["periods"], bounds)
    for row in body["periods"]:
        assert row["quota_used_percent"] == 100 * row["rx_bytes"] / QUOTA


def test_the_current_period_is_projected_at_the_last_24_hours_pace(api, history) -> None:
    InterfacePlan.objects.create(
        host=history.host, interface="eth0", cycle_start_day=15, quota_bytes=QUOTA
    )
    last_rx, last_tx = expected(NOW - DAY, NOW)
    for by, start, end in [
        ("day", midnight(date(2027, 4, 3)), midnight(date(2027, 4, 4))),
        ("month", midnight(date(2027, 4, 1)), midnight(date(2027, 5, 1))),
        ("cycle", midnight(date(2027, 3, 15)), midnight(date(2027, 4, 15))),
    ]:
        *past, current = api(f"/api/stats/usage?iface=eth0&by={by}&count=3")["periods"]
        rx, tx = expected(start, end)
        left_us = (end - NOW) // timedelta(microseconds=1)
        projected_rx = rx + last_rx * left_us // 86_400_000_000
        projected_tx = tx + last_tx * left_us // 86_400_000_000
        assert (current["projected_rx_bytes"], current["projected_tx_bytes"]) == (
            projected_rx,
            projected_tx,
        )
        assert current["projected_total_bytes"] == projected_rx + projected_tx
        assert all(row["projected_total_bytes"] is None for row in past)
        if by == "cycle":  # the quota counts both directions
            assert current["quota_used_percent"] == 100 * (rx + tx) / QUOTA
            assert current["quota_projected_percent"] == 100 * (projected_rx + projected_tx) / QUOTA
        else:
            assert current["quota_used_percent"] is current["quota_projected_percent"] is None


def test_the_projection_of_terabytes_is_exact() -> None:
    """Integer arithmetic all through: no float rounding, no timedelta overflow."""
    last_day = Carried(10**15 + 1, 3)
    month = projection(Carried(7, 0), last_day, NOW, NOW + timedelta(days=30, microseconds=1))
    assert month == Carried(7 + 30 * (10**15 + 1) + (10**15 + 1) // 86_400_000_000, 90)


def test_host_selects_the_series(api, history) -> None:
    elsewhere = Host.objects.create(id="00000000-0000-0000-0000-00000000beef", name="far")
    run = start_run("eth0", started_at=FIRST, host=elsewhere)
    write_samples(run, [(NOW - timedelta(hours=1), 1.0, 5, 6)])
    body = api("/api/stats/usage?host=far&iface=eth0&by=month&count=1")
    assert body["host"] == str(elsewhere.pk)
    assert [(row["rx_bytes"], row["tx_bytes"]) for row in body["periods"]] == [(5, 6)]
    here = api(f"/api/stats/usage?host={history.host.pk}&iface=eth0&by=month&count=1")
    assert here["periods"][0]["rx_bytes"] == expected(midnight(date(2027, 4, 1)), NOW)[0]


@pytest.mark.parametrize(
    ("query", "parameter", "words"),
    [
        ("by=week", "by", "'week' is not one of day, month, cycle"),
        ("count=0", "count", "greater than or equal to 1"),
        ("count=1001", "count", "less than or equal to 1000"),
        ("count=many", "count", "valid integer"),
        ("iface=nope0", "iface", "unknown interface 'nope0'"),
        ("iface=", "iface", "may not be blank"),
        ("host=nowhere&iface=eth0", "host", "unknown host 'nowhere'"),
    ],
)
def test_bad_queries_are_400s_that_say_why(api, history, query, parameter, words) -> None:
    body = api(f"/api/stats/usage?{query}", status=400)
    assert words in " ".join(body[parameter])


def test_no_samples_yet_is_a_404(api, written) -> None:
    Host.objects.all().delete()  # in this test's transaction, which is rolled back
    assert "no samples yet" in api("/api/stats/usage", status=404)["detail"]


def test_periods_off_the_hour_are_exact_too(history) -> None:
    """In a zone whose midnight is a half hour in UTC, the edges come from the minute tier and
    adjacent periods' hour parts do not touch: still one total per period, as carried() has it."""
    kolkata = ZoneInfo("Asia/Kolkata")
    days = [date(2027, 3, 20) + timedelta(days=i) for i in range(15)]
    bounds = [
        (datetime.combine(d, time(), kolkata), datetime.combine(d + DAY, time(), kolkata))
        for d in days
    ]
    series = Series(history.host_id, "eth0")
    totals = carried_each(series, bounds)
    assert totals == [carried(series, lo, hi) for lo, hi in bounds]
    assert [(t.rx_bytes, t.tx_bytes) for t in totals] == [expected(lo, hi) for lo, hi in bounds]


def test_a_thousand_days_off_the_hour_count_every_byte_once(api, history, settings) -> None:
    """1000 days in Asia/Kolkata: 2000 ranges of hour and minute parts, read in chunks (SQLite
    refuses an OR of 1000 terms)."""
    settings.NETMETRICS_TIME_ZONE = "Asia/Kolkata"
    periods = api("/api/stats/usage?iface=eth0&by=day&count=1000")["periods"]
    assert len(periods) == 1000
    assert sum(row["rx_bytes"] for row in periods) == sum(rx for _, _, rx, _ in ROWS)
    assert sum(row["tx_bytes"] for row in periods) == sum(tx for _, _, _, tx in ROWS)


# ---------------------------------------------------------------- the plan in the admin

PLANS = "/admin/usage/interfaceplan/"


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def _post_plan(admin_client: Client, host: Host, **fields: object):
    form = {
        "host": host.pk,
        "interface": "eth0",
        "cycle_start_day": 1,
        "quota_bytes": "",
        "quota_direction": "total",
    }
    return admin_client.post(f"{PLANS}add/", {**form, **fields})


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cycle_start_day": 0}, "cycle_start_day", "greater than or equal to 1"),
        ({"cycle_start_day": 29}, "cycle_start_day", "less than or equal to 28"),
        ({"quota_bytes": 0}, "quota_bytes", "greater than or equal to 1"),
        ({"quota_bytes": -5}, "quota_bytes", "greater than or equal to"),
        (
            {"interface": "wlan7"},
            "interface",
            "has no samples of 'wlan7' (its interfaces with samples: eth0, eth1)",
        ),
    ],
)
def test_a_bad_plan_gets_a_clear_error(admin_client, written, fields, field, words) -> None:
    response = _post_plan(admin_client, written.host, **fields)
    assert response.status_code == 200
    assert any(words in error for error in response.context["adminform"].form.errors[field])
    assert not InterfacePlan.objects.exists()


def test_the_form_lists_the_interfaces_with_samples(admin_client, written) -> None:
    host = written.host.name
    page = admin_client.get(f"{PLANS}add/").content.decode()
    assert f"with samples: {host}: eth0, eth1" in page


def test_a_plan_is_saved_and_listed(admin_client, written) -> None:
    response = _post_plan(
        admin_client, written.host, cycle_start_day=15, quota_bytes=10**12, quota_direction="rx"
    )
    assert response.status_code == 302
    plan = InterfacePlan.objects.get()
    assert (plan.interface, plan.cycle_start_day, plan.quota_bytes, plan.quota_direction) == (
        "eth0",
        15,
        10**12,
        "rx",
    )
    listing = admin_client.get(f"{PLANS}?host={written.host.pk}").content.decode()
    assert "1,000,000,000,000 B (931 GiB)" in listing
