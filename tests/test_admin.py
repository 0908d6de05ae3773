"""History in the admin: read-only, newest first, filtered by interface and run, in human
units, exported as CSV exactly as filtered, with bounded queries however many rows."""

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpResponseBase, StreamingHttpResponse
from django.test import AsyncClient, Client

from bpf.classes import ALL_COUNTER_NAMES
from metrics.models import PEAKS, FlowMinute, Host, HourRollup, MinuteRollup, Sample, SamplerRun
from metrics.units import format_duration
from tests.samples import T0, at, counters, start_run

pytestmark = pytest.mark.django_db

SAMPLES = "/admin/metrics/sample/"
MINUTES = "/admin/metrics/minuterollup/"
HOURS = "/admin/metrics/hourrollup/"
RUNS = "/admin/metrics/samplerrun/"
FLOWS = "/admin/metrics/flowminute/"


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "pw")


@pytest.fixture
def admin_client(client: Client, superuser: User) -> Client:
    client.force_login(superuser)
    return client


@pytest.fixture
def history() -> dict[str, SamplerRun]:
    """eth0: two runs (the first stopped after two samples, the second still sampling, one
    sample a minute later); veth9: one sample, no egress."""
    eth0 = start_run("eth0")
    eth0.record(counters(rx_total_bytes=1_250_000, rx_total_packets=1000), at(1), 1.0)
    eth0.record(counters(rx_total_bytes=1_250_100, rx_total_packets=1001), at(2), 1.0)
    eth0.stop(at(2))
    veth = start_run("veth9", egress=False)
    veth.record(counters(rx_total_bytes=125, rx_total_packets=1), at(1), 1.0)
    again = start_run("eth0", started_at=at(60))
    again.record(counters(rx_total_bytes=500, tx_total_bytes=250, tx_total_packets=3), at(61), 1.0)
    return {"eth0": eth0, "veth9": veth, "again": again}


def rows(response) -> list:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def read_csv(response: HttpResponseBase) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert isinstance(response, StreamingHttpResponse)
    return list(csv.DictReader(io.StringIO(response.getvalue().decode())))


# ----------------------------------------------------------------------- changelists, units


def test_sample_list_newest_first_in_human_units(admin_client: Client, history) -> None:
    page = admin_client.get(SAMPLES).content.decode()
    assert page.index("12:01:01") < page.index("12:00:02") < page.index("12:00:01")
    assert "10.0 Mbit/s" in page  # 1,250,000 B in 1 s
    assert "800 bit/s" in page  # the second eth0 sample: 100 B in 1 s
    assert cell("total_bytes", "1.19 MiB") in page  # 1,250,000 B
    assert cell("tx_bandwidth", "—") in page  # veth9 measures no egress


def cell(column: str, text: str) -> str:
    """How the changelist renders one list_display value."""
    return f'<td class="field-{column}">{text}</td>'


def test_minute_rollups_in_human_units(admin_client: Client, history) -> None:
    response = admin_client.get(MINUTES + "?interface=eth0")
    assert [b.start for b in rows(response)] == [T0 + timedelta(minutes=1), T0]
    page = response.content.decode()
    assert '<th class="field-bucket"><a href=' in page and "2026-11-27 12:01</a>" in page
    # 12:00: 1,250,100 B over 2 measured seconds; the peak is the first second's.
    assert cell("bandwidth", "5.00 Mbit/s") in page
    assert cell("peak_bandwidth", "10.0 Mbit/s") in page
    assert cell("pps", "500") in page  # 1001 packets in 2 s
    assert cell("total_bytes", "1.19 MiB") in page
    assert cell("samples", "2") in page and cell("measured", "2 s") in page
    # 12:01: 500 B in, 250 B out in 1 s.
    assert cell("bandwidth", "6.00 kbit/s") in page
    assert cell("rx_bandwidth", "4.00 kbit/s") in page
    assert cell("tx_bandwidth", "2.00 kbit/s") in page


def test_hour_rollup_sums_the_hour(admin_client: Client, history) -> None:
    response = admin_client.get(HOURS + "?interface=eth0")
    [hour] = rows(response)
    assert (hour.start, hour.samples, hour.seconds) == (T0, 3, 3.0)
    page = response.content.decode()
    assert cell("bandwidth", "3.34 Mbit/s") in page  # 1,250,850 B * 8 / 3 s
    assert cell("peak_bandwidth", "10.0 Mbit/s") in page
    assert cell("measured", "3 s") in page


# ------------------------------------------------------------------------------- filters


def test_sample_list_filters_by_interface(admin_client: Client, history) -> None:
    response = admin_client.get(SAMPLES + "?interface=veth9")
    assert [s.interface for s in rows(response)] == ["veth9"]
    assert "1.00 kbit/s" in response.content.decode()


def test_sample_list_filters_by_run(admin_client: Client, history) -> None:
    first, again = history["eth0"], history["again"]
    response = admin_client.get(f"{SAMPLES}?run={first.pk}")
    assert [s.timestamp for s in rows(response)] == [at(2), at(1)]
    assert {s.run_id for s in rows(admin_client.get(f"{SAMPLES}?run={again.pk}"))} == {again.pk}
    page = response.content.decode()
    assert "eth0 from 2026-11-27 12:01 (native)" in page  # the run filter's choices
    assert "veth9 from 2026-11-27 12:00 (native)" in page


def test_run_choices_narrow_to_the_chosen_interface(admin_client: Client, history) -> None:
    page = admin_client.get(SAMPLES + "?interface=veth9").content.decode()
    assert "veth9 from" in page and "eth0 from" not in page


def test_a_bad_run_id_is_the_admins_lookup_error_not_a_500(admin_client: Client, history) -> None:
    response = admin_client.get(SAMPLES + "?run=nope")
    assert response.status_code == 302 and "e=1" in response["Location"]


@pytest.mark.parametrize("url", [MINUTES, HOURS])
def test_rollups_filter_by_interface(admin_client: Client, history, url: str) -> None:
    assert {b.interface for b in rows(admin_client.get(url + "?interface=veth9"))} == {"veth9"}
    assert {b.interface for b in rows(admin_client.get(url + "?interface=eth0"))} == {"eth0"}


def test_date_hierarchy_narrows_the_list(admin_client: Client, history) -> None:
    response = admin_client.get(SAMPLES + "?start__year=2026&start__month=11&start__day=28")
    assert rows(response) == []
    assert len(rows(admin_client.get(SAMPLES + "?start__year=2026&start__month=11"))) == 4


# ---------------------------------------------------------------------------- CSV export


def test_export_link_carries_the_lists_query(admin_client: Client, history) -> None:
    page = admin_client.get(SAMPLES + "?interface=eth0&q=").content.decode()
    assert 'href="/admin/metrics/sample/export.csv?interface=eth0' in page


def test_sample_export_is_exactly_the_filtered_list(admin_client: Client, history) -> None:
    first = history["eth0"]
    exported = read_csv(admin_client.get(f"{SAMPLES}export.csv?interface=eth0&run={first.pk}&p=9"))
    header = ["start", "timestamp", "host", "interface", "run", "elapsed", *ALL_COUNTER_NAMES]
    assert list(exported[0]) == header
    assert [(r["timestamp"], r["host"], r["run"]) for r in exported] == [
        ("2026-11-27T12:00:02+00:00", str(first.host_id), str(first.pk)),
        ("2026-11-27T12:00:01+00:00", str(first.host_id), str(first.pk)),
    ]
    assert [r["rx_total_bytes"] for r in exported] == ["100", "1250000"]
    assert exported[1]["start"] == "2026-11-27T12:00:00+00:00"
    assert exported[1]["elapsed"] == "1.0"


@pytest.mark.parametrize(("url", "model"), [(MINUTES, MinuteRollup), (HOURS, HourRollup)])
def test_rollup_export_has_seconds_and_peaks(admin_client: Client, history, url, model) -> None:
    exported = read_csv(admin_client.get(url + "export.csv?interface=eth0&o=1"))  # oldest first
    peaks = [column for column, _direction, _unit in PEAKS]
    assert list(exported[0]) == [
        "start",
        "host",
        "interface",
        "seconds",
        "samples",
        *ALL_COUNTER_NAMES,
        *peaks,
    ]
    expected = model.objects.filter(interface="eth0").order_by("start")
    assert [r["start"] for r in exported] == [b.start.isoformat() for b in expected]
    assert exported[0]["peak_bandwidth_bps"] == "10000000.0"
    assert exported[0]["rx_total_bytes"] == str(expected[0].rx_total_bytes)


def test_export_action_exports_the_selected_rows(admin_client: Client, history) -> None:
    chosen = Sample.objects.filter(interface="eth0").order_by("start")[:2]
    response = admin_client.post(
        SAMPLES,
        {"action": "export_selected_csv", "_selected_action": [s.pk for s in chosen]},
    )
    assert [r["timestamp"] for r in read_csv(response)] == [
        "2026-11-27T12:00:02+00:00",
        "2026-11-27T12:00:01+00:00",
    ]


def test_export_streams_asynchronously_under_asgi(superuser: User, history) -> None:
    """Under daphne a synchronous iterator would be read whole before the first byte is sent."""

    async def export() -> tuple[StreamingHttpResponse, bytes]:
        client = AsyncClient()
        await client.aforce_login(superuser)
        response = await client.get(MINUTES + "export.csv?interface=veth9")
        assert isinstance(response, StreamingHttpResponse) and response.is_async
        content = response.streaming_content
        assert isinstance(content, AsyncIterator)
        return response, b"".join([chunk async for chunk in content])

    _response, body = async_to_sync(export)()
    lines = body.decode().splitlines()
    assert lines[0].startswith("start,host,interface,seconds,samples,rx_total_packets")
    assert [line.split(",")[2] for line in lines[1:]] == ["veth9"]


def test_export_needs_a_login(client: Client, history) -> None:
    response = client.get(SAMPLES + "export.csv")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_export_of_a_bad_filter_is_a_400(admin_client: Client, history) -> None:
    assert admin_client.get(SAMPLES + "export.csv?run=nope").status_code == 400


# ------------------------------------------------------------------------ runs, read-only


def test_run_list_shows_duration_mode_egress_and_samples(admin_client: Client, history) -> None:
    page = admin_client.get(RUNS).content.decode()
    assert "Samples recorded (measured time ÷ interval)" in page
    assert cell("duration", "2 s") in page  # the first eth0 run: 12:00:00 to 12:00:02
    assert cell("duration", "1 s, stale") in page  # never stopped: until its last sample
    assert cell("mode", "native XDP") in page
    assert cell("sent", "not measured") in page and cell("sent", "250 B") in page
    assert cell("samples_recorded", "2") in page
    runs = rows(admin_client.get(RUNS + "?interface=eth0"))
    assert [round(r.measured_seconds / r.interval) for r in runs] == [1, 2]


def test_a_live_runs_duration_runs_until_now(admin_client: Client) -> None:
    from django.utils import timezone

    now = timezone.now()
    run = start_run("eth0", started_at=now - timedelta(hours=2, minutes=3, seconds=1))
    run.record(counters(rx_total_bytes=1), now, 1.0)
    assert "2 h 03 min, running" in admin_client.get(RUNS).content.decode()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45, "45 s"), (187, "3 min 07 s"), (7381, "2 h 03 min"), (273600, "3 d 04 h")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("model", ["sample", "minuterollup", "hourrollup", "samplerrun"])
def test_history_is_read_only(admin_client: Client, history, model: str) -> None:
    url = f"/admin/metrics/{model}/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url + "add/").status_code == 403
    models: dict[str, type[Sample | MinuteRollup | HourRollup | SamplerRun]] = {
        "sample": Sample,
        "minuterollup": MinuteRollup,
        "hourrollup": HourRollup,
        "samplerrun": SamplerRun,
    }
    pk = models[model]._default_manager.all()[0].pk
    change = admin_client.post(f"{url}{pk}/change/", {"interface": "hacked"})
    assert change.status_code == 403  # a view-only page answers GET, but never saves
    assert admin_client.post(f"{url}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(url, {"action": "delete_selected", "_selected_action": [pk]})
    assert not Sample.objects.filter(interface="hacked").exists()
    assert Sample.objects.count() == 4 and SamplerRun.objects.count() == 3


def test_admin_needs_a_login(client: Client) -> None:
    response = client.get(SAMPLES)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_header_links_to_the_dashboard(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert '<a id="dashboard-link" href="/">Dashboard</a>' in page
    assert "View site" not in page


# --------------------------------------------------------------------------------- speed


@pytest.mark.parametrize("url", [SAMPLES, MINUTES, HOURS, RUNS, FLOWS])
def test_a_full_page_costs_a_fixed_number_of_queries(
    admin_client: Client, django_assert_max_num_queries, url: str
) -> None:
    """100 rows of every list, each sample from its own run (so a query per row for the run
    would show): session, user, page count, page, filter choices, date hierarchy range and
    dates."""
    for hour in range(100):
        run = start_run(("eth0", "eth1")[hour % 2], started_at=at(hour * 3600))
        run.record(counters(rx_total_bytes=1000), at(hour * 3600 + 1), 1.0)
        FlowMinute.objects.create(
            **run.series.filter(),
            start=at(hour * 3600),
            protocol=6,
            local="10.0.0.1",
            local_port=hour,
            remote="10.0.0.2",
            remote_port=443,
        )
    with django_assert_max_num_queries(10):
        response = admin_client.get(url)
    assert len(rows(response)) == 100


# --------------------------------------------------------------------------------- flows


@pytest.fixture
def flow_minutes() -> None:
    """eth0: a download at 12:00, SSH over IPv6 and an IPv6 ping at 12:01; veth9: DNS."""
    rows = [
        ("eth0", 0, 6, "10.0.0.1", 50000, "93.184.216.34", 443, (900, 1_250_000, 450, 30_000)),
        ("eth0", 60, 6, "2001:db8::1", 40000, "2001:db8::2", 22, (10, 1000, 10, 1000)),
        ("eth0", 60, 58, "2001:db8::1", 0, "2001:db8::2", 0, (1, 104, 1, 104)),
        ("veth9", 60, 17, "10.0.0.1", 5353, "10.0.0.53", 53, (1, 90, 1, 60)),
    ]
    for interface, second, protocol, local, local_port, remote, remote_port, counts in rows:
        rx_packets, rx_bytes, tx_packets, tx_bytes = counts
        FlowMinute.objects.create(
            host=Host.objects.local(),
            interface=interface,
            start=at(second),
            protocol=protocol,
            local=local,
            local_port=local_port,
            remote=remote,
            remote_port=remote_port,
            rx_packets=rx_packets,
            rx_bytes=rx_bytes,
            tx_packets=tx_packets,
            tx_bytes=tx_bytes,
        )
    start_run("eth0")  # the interface filter's choices come from the runs
    start_run("veth9")


def test_flow_minutes_newest_first_in_human_units(admin_client: Client, flow_minutes) -> None:
    response = admin_client.get(FLOWS + "?interface=eth0")
    assert [f.start for f in rows(response)] == [at(60), at(60), at(0)]
    page = response.content.decode()
    assert "2026-11-27 12:01</a>" in page
    assert cell("protocol_name", "tcp") in page and cell("protocol_name", "icmpv6") in page
    assert cell("local_end", "10.0.0.1:50000") in page
    assert cell("remote_end", "93.184.216.34:443") in page
    assert cell("local_end", "[2001:db8::1]:40000") in page
    assert cell("remote_end", "2001:db8::2") in page  # ICMPv6: no port
    assert cell("received", "1.19 MiB") in page and cell("sent", "29.3 KiB") in page
    assert "10.0.0.53" not in page


def test_flow_minutes_export_as_csv(admin_client: Client, flow_minutes) -> None:
    exported = read_csv(admin_client.get(FLOWS + "export.csv?interface=veth9"))
    assert exported == [
        {
            "start": "2026-11-27T12:01:00+00:00",
            "host": str(settings.NETMETRICS_HOST_ID),
            "interface": "veth9",
            "protocol": "17",
            "local": "10.0.0.1",
            "local_port": "5353",
            "remote": "10.0.0.53",
            "remote_port": "53",
            "rx_packets": "1",
            "rx_bytes": "90",
            "tx_packets": "1",
            "tx_bytes": "60",
        }
    ]


def test_flow_minutes_are_read_only(admin_client: Client, flow_minutes) -> None:
    pk = FlowMinute.objects.all()[0].pk
    assert admin_client.get(FLOWS + "add/").status_code == 403
    assert admin_client.post(f"{FLOWS}{pk}/change/", {"interface": "hacked"}).status_code == 403
    assert admin_client.post(f"{FLOWS}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert FlowMinute.objects.count() == 4
