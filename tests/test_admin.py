"""History in the admin: read-only, newest first, filtered by interface, in human units."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


@pytest.fixture
def history() -> None:
    eth0 = start_run("eth0")
    eth0.record(counters(rx_total_bytes=1_250_000, rx_total_packets=1000), at(1), 1.0)
    eth0.record(counters(rx_total_bytes=1_250_100, rx_total_packets=1001), at(2), 1.0)
    veth = start_run("veth9", egress=False)
    veth.record(counters(rx_total_bytes=125, rx_total_packets=1), at(1), 1.0)


def test_sample_list_newest_first_in_human_units(admin_client: Client, history) -> None:
    page = admin_client.get("/admin/metrics/sample/").content.decode()
    assert page.index("12:00:02") < page.index("12:00:01")
    assert "10.0 Mbit/s" in page  # 1,250,000 B in 1 s
    assert "800 bit/s" in page  # the second eth0 sample: 100 B in 1 s


def test_sample_list_filters_by_interface(admin_client: Client, history) -> None:
    response = admin_client.get("/admin/metrics/sample/?interface=veth9")
    rows = response.context["cl"].result_list
    assert [s.interface for s in rows] == ["veth9"]
    assert "1.00 kbit/s" in response.content.decode()


def test_samples_and_runs_are_read_only(admin_client: Client, history) -> None:
    assert admin_client.get("/admin/metrics/sample/add/").status_code == 403
    assert admin_client.get("/admin/metrics/samplerrun/add/").status_code == 403
    page = admin_client.get("/admin/metrics/samplerrun/").content.decode()
    assert "not measured" in page and "veth9" in page


def test_admin_needs_a_login(client: Client) -> None:
    response = client.get("/admin/metrics/sample/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
