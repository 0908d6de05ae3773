"""Rollup tiers, retention and the rebuild command, against samples written by the models."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from metrics.models import FlowMinute, HourRollup, MinuteRollup, Recording, Sample, SamplerRun
from metrics.retention import prune
from tests.samples import at, counters, start_run, write_samples

pytestmark = pytest.mark.django_db


def record_seconds(run, first: int, count: int, rx_bytes: int = 100, tx_bytes: int = 10):
    """count one-second samples starting at T0 + first seconds; each sample i carries
    rx_bytes * (i + 1) bytes in, tx_bytes out, one packet each way."""
    rx = tx = packets = 0
    if run.last_sample is not None:
        rx, tx, packets = run.rx_total_bytes, run.tx_total_bytes, run.rx_total_packets
    for i in range(count):
        rx += rx_bytes * (i + 1)
        tx += tx_bytes
        packets += 1
        run.record(
            counters(
                rx_total_bytes=rx,
                rx_total_packets=packets,
                tx_total_bytes=tx,
                tx_total_packets=packets,
                rx_tcp_bytes=rx,
            ),
            at(first + i + 1),
            1.0,
        )


def test_sampler_writes_keep_minute_and_hour_buckets_current() -> None:
    run = start_run()
    record_seconds(run, 55, 10)  # samples start at 12:00:55 ... 12:01:04
    minutes = {m.start: m for m in MinuteRollup.objects.all()}
    assert sorted(minutes) == [at(0), at(60)]
    first, second = minutes[at(0)], minutes[at(60)]
    assert (first.samples, second.samples) == (5, 5)
    assert first.rx_total_bytes == 100 * (1 + 2 + 3 + 4 + 5)
    assert second.rx_total_bytes == 100 * (6 + 7 + 8 + 9 + 10)
    assert first.seconds == 5.0 and first.tx_total_packets == 5
    assert first.peak_bandwidth_bps == (500 + 10) * 8  # its largest second
    assert first.rx_peak_bandwidth_bps == 500 * 8 and first.tx_peak_packets_per_sec == 1
    hour = HourRollup.objects.get()
    assert hour.start == at(0) and hour.samples == 10
    assert hour.rx_total_bytes == first.rx_total_bytes + second.rx_total_bytes
    assert hour.rx_tcp_bytes == hour.rx_total_bytes
    assert hour.peak_bandwidth_bps == (1000 + 10) * 8


def test_a_thousand_rows_of_90_columns_go_in_statements_the_database_takes() -> None:
    # 90,000 parameters in one INSERT would pass Django's bulk_batch_size on PostgreSQL and
    # exceed its protocol's 65,535 (metrics.batch.MAX_PARAMETERS).
    write_samples(start_run(), [(at(i), 1.0, 100 + i, 10) for i in range(1000)])
    assert Sample.objects.count() == 1000
    assert sum(Sample.objects.values_list("rx_total_bytes", flat=True)) == 100 * 1000 + 499_500
    minutes = MinuteRollup.objects.order_by("start")
    assert [m.samples for m in minutes] == [60] * 16 + [40]
    assert sum(m.rx_total_bytes for m in minutes) == 100 * 1000 + 499_500


def test_one_batch_records_several_runs_into_new_and_existing_buckets(
    django_assert_num_queries,
) -> None:
    """What one tick writes for several interfaces: a sample each, their own buckets (one of
    them already there, one new), their runs' totals, in a fixed number of statements."""
    runs = [start_run(name) for name in ("eth0", "eth1", "eth2")]
    runs[0].record(counters(rx_total_bytes=50, rx_total_packets=1), at(30), 1.0)  # bucket exists
    tick = [
        Recording(
            run, counters(rx_total_bytes=run.rx_total_bytes + 100 * n, rx_total_packets=n), 2.0
        )
        for n, run in enumerate(runs, start=1)
    ]
    # The samples; per tier one upsert; the runs; on PostgreSQL, the tick's NOTIFY
    # (metrics/announce.py). Whatever their number.
    with django_assert_num_queries(5 if connection.vendor == "postgresql" else 4):
        samples = SamplerRun.objects.record(tick, at(40))
    assert [s.rx_total_bytes for s in samples] == [100, 200, 300]
    minutes = {m.interface: m for m in MinuteRollup.objects.filter(start=at(0))}
    assert {k: (m.rx_total_bytes, m.samples, m.seconds) for k, m in minutes.items()} == {
        "eth0": (150, 2, 3.0),
        "eth1": (200, 1, 2.0),
        "eth2": (300, 1, 2.0),
    }
    assert minutes["eth0"].rx_peak_bandwidth_bps == 50 * 8  # 50 B in 1 s beats 100 B in 2 s
    fresh = {run.interface: run for run in SamplerRun.objects.all()}
    for run, sample in zip(runs, samples, strict=True):
        assert fresh[run.interface].last_sample == sample == run.last_sample
        assert fresh[run.interface].rx_total_bytes == run.rx_total_bytes
    assert fresh["eth0"].measured_seconds == 3.0 and fresh["eth2"].rx_total_packets == 3


@pytest.mark.usefixtures("requires_postgres")
def test_on_postgresql_a_tick_is_prepared_statements_after_five() -> None:
    """PostgreSQL parses and plans a sampler's tick once, not every second (envconfig's
    POSTGRES_BINDING): after five ticks each of its statements is a prepared one, whatever the
    size of the counts (psycopg would send 1 as int2 and 70,000 as int4: other statements)."""
    runs = [start_run(name) for name in ("eth0", "eth1")]
    cumulative = [1, 70_000, 70_001, 5 * 10**9, 5 * 10**9 + 1, 5 * 10**9 + 70_000]
    for second, count in enumerate(cumulative):
        SamplerRun.objects.record(
            [Recording(run, counters(rx_total_bytes=count), 1.0) for run in runs],
            at(second + 1),
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    tables = ("metrics_sample", "metrics_minuterollup", "metrics_hourrollup", "metrics_samplerrun")
    for table in tables:
        assert any(f'"{table}"' in statement for statement in prepared), (table, prepared)


def test_rebuild_reproduces_what_the_sampler_wrote() -> None:
    run = start_run()
    record_seconds(run, 0, 130)  # the first sample starts at 12:00:00 exactly
    written = list(MinuteRollup.objects.order_by("start").values())
    MinuteRollup.objects.filter(start=at(60)).delete()
    MinuteRollup.objects.update(rx_total_bytes=0, peak_bandwidth_bps=0)
    HourRollup.objects.update(rx_total_bytes=0)
    call_command("rebuildrollups", stdout=open("/dev/null", "w"))  # noqa: SIM115
    rebuilt = list(MinuteRollup.objects.order_by("start").values())
    assert len(written) == 3
    ignore = {"id"}
    assert [{k: v for k, v in r.items() if k not in ignore} for r in rebuilt] == [
        {k: v for k, v in r.items() if k not in ignore} for r in written
    ]
    assert HourRollup.objects.get().rx_total_bytes == sum(r["rx_total_bytes"] for r in written)


def test_rebuild_leaves_buckets_whose_early_samples_are_gone() -> None:
    run = start_run()
    record_seconds(run, 10, 60)  # minute 12:00 from :11, minute 12:01 to :10
    Sample.objects.filter(start__lt=at(30)).delete()  # as retention would
    before = MinuteRollup.objects.get(start=at(0)).rx_total_bytes
    call_command("rebuildrollups", "--iface", "eth0", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert MinuteRollup.objects.get(start=at(0)).rx_total_bytes == before


@override_settings(
    NETMETRICS_RETENTION={
        "samples": timedelta(minutes=1),
        "minutes": timedelta(hours=1),
        "hours": timedelta(days=1),
        "flows": timedelta(minutes=5),
    }
)
def test_prune_deletes_expired_rows_in_batches_per_interface() -> None:
    run = start_run()
    record_seconds(run, 0, 150)
    flow = {"protocol": 17, "local": "10.0.0.1", "local_port": 53, "remote": "10.0.0.2"}
    for minute in range(3):
        FlowMinute.objects.create(
            **run.series.filter(), start=at(60 * minute), remote_port=1, **flow
        )
    other = start_run("veth1")
    record_seconds(other, 0, 5)
    now = at(150)
    assert prune(run.series, now, batch=50) == 50
    assert Sample.objects.filter(interface="eth0").count() == 100
    prune(run.series, now, batch=50)
    assert prune(run.series, now, batch=50) == 0  # caught up: only the last minute is left
    kept = Sample.objects.filter(interface="eth0")
    assert kept.count() == 60 and min(kept.values_list("start", flat=True)) >= now - timedelta(
        minutes=1
    )
    assert Sample.objects.filter(interface="veth1").count() == 5  # another interface's rows
    assert MinuteRollup.objects.filter(interface="eth0").count() == 3  # within the hour
    assert FlowMinute.objects.count() == 3  # flows are kept 5 minutes
    assert (
        prune(run.series, at(3600 * 2), batch=1000) == 60 + 3 + 3
    )  # then minutes and flows expire
    assert not MinuteRollup.objects.filter(interface="eth0").exists()
    assert not FlowMinute.objects.exists()
    assert HourRollup.objects.filter(interface="eth0").count() == 1
    run.refresh_from_db()
    assert run.last_sample is None and run.rx_total_bytes > 0  # the run keeps its totals
