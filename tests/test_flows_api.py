"""Top talkers: /api/flows/top sums each minute's top flows over a window, /api/flows/live
serves a run's live table, and names come from the hosts file only."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from metrics import hostnames
from metrics.hostnames import known_name
from metrics.models import FlowMinute, Host, LiveFlows, SamplerRun
from metrics.relay import SampleRelay
from tests.samples import T0, counters, start_run

pytestmark = pytest.mark.django_db

# The API's "now" in these tests: half a minute into 12:30, so windows end mid-minute.
NOW = T0 + timedelta(minutes=30, seconds=30)
MINUTE = T0 + timedelta(minutes=30)  # the minute NOW is in

HOSTS = """\
# a comment line
127.0.0.1 localhost
10.0.0.53\tresolver dns.lan   # aliases and a trailing comment
2001:0db8:0000::0002 ipv6-peer
10.0.0.53 later-name
not-an-address ignored
"""


@pytest.fixture
def api(api, monkeypatch):
    """conftest's api at NOW; no test of this module may look a name up on the network."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)

    def offline(*args, **kwargs):
        raise AssertionError("a name was looked up on the network")

    for name in ("gethostbyaddr", "getnameinfo", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, offline)
    return api


@pytest.fixture
def hosts_file(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    monkeypatch.setattr(hostnames, "HOSTS_FILE", path)
    return path


def flow_run(interface: str = "eth0", flow_table: int = 4096) -> SamplerRun:
    """A run with flows (or not) and one sample just before NOW, so the interface is known."""
    run = start_run(interface, started_at=NOW - timedelta(minutes=5))
    run.flow_table = flow_table
    run.save(update_fields=["flow_table"])
    run.record(counters(rx_total_packets=1, rx_total_bytes=60), NOW - timedelta(seconds=1), 1.0)
    return run


def flow(minutes_ago: int, protocol: int, local: str, remote: str, *counts: int, **ends) -> None:
    """One row of the minute `minutes_ago` before NOW's: counts are rx/tx packets and bytes."""
    rx_packets, rx_bytes, tx_packets, tx_bytes = counts
    FlowMinute.objects.create(
        host=Host.objects.local(),
        interface=ends.pop("interface", "eth0"),
        start=MINUTE - timedelta(minutes=minutes_ago),
        protocol=protocol,
        local=local,
        local_port=ends.pop("local_port", 0),
        remote=remote,
        remote_port=ends.pop("remote_port", 0),
        rx_packets=rx_packets,
        rx_bytes=rx_bytes,
        tx_packets=tx_packets,
        tx_bytes=tx_bytes,
    )


@pytest.fixture
def talkers() -> SamplerRun:
    """eth0's flows in the last minutes: a download (most bytes), a DNS storm (most packets),
    SSH over IPv6, a ping and GRE; GRE was the biggest 90 minutes ago. veth1 has a flow too."""
    flow_run("veth1")
    run = flow_run()  # eth0 after veth1: the interface of the newest sample
    https = {"local_port": 50000, "remote_port": 443}
    flow(1, 6, "10.0.0.1", "93.184.216.34", 40, 60000, 20, 1200, **https)
    flow(0, 6, "10.0.0.1", "93.184.216.34", 20, 30000, 10, 600, **https)
    flow(0, 17, "10.0.0.1", "10.0.0.53", 500, 32000, 500, 32000, local_port=5353, remote_port=53)
    ssh = {"local_port": 40000, "remote_port": 22}
    flow(3, 6, "2001:db8::1", "2001:db8::2", 60, 6000, 60, 6000, **ssh)
    flow(2, 6, "2001:db8::1", "2001:db8::2", 40, 4000, 40, 4000, **ssh)
    flow(1, 1, "10.0.0.1", "10.0.0.9", 5, 420, 5, 420)
    flow(2, 47, "10.0.0.1", "10.0.0.7", 1, 100, 0, 0)
    flow(90, 47, "10.0.0.1", "10.0.0.7", 10**6, 10**9, 0, 0)
    flow(0, 6, "10.9.9.9", "10.9.9.8", 10**6, 10**9, 0, 0, interface="veth1")
    return run


def ends(body: dict) -> list[tuple[str, str, int]]:
    return [(f["protocol"], f["remote"], f["remote_port"]) for f in body["flows"]]


HTTPS = ("tcp", "93.184.216.34", 443)
DNS = ("udp", "10.0.0.53", 53)
SSH = ("tcp", "2001:db8::2", 22)
PING = ("icmp", "10.0.0.9", 0)
GRE = ("47", "10.0.0.7", 0)


def test_top_by_bytes_sums_each_flow_over_the_window(api, talkers) -> None:
    body = api("/api/flows/top?iface=eth0")
    assert ends(body) == [HTTPS, DNS, SSH, PING, GRE]
    assert body["flows"][0] == {
        "protocol": "tcp",
        "protocol_number": 6,
        "local": "10.0.0.1",
        "local_port": 50000,
        "local_name": None,
        "remote": "93.184.216.34",
        "remote_port": 443,
        "remote_name": None,
        "rx_packets": 60,
        "rx_bytes": 90000,
        "tx_packets": 30,
        "tx_bytes": 1800,
        "packets": 90,
        "bytes": 91800,
    }
    assert [(f["packets"], f["bytes"]) for f in body["flows"][1:]] == [
        (1000, 64000),
        (200, 20000),
        (10, 840),
        (1, 100),
    ]


def test_top_by_packets_orders_otherwise(api, talkers) -> None:
    body = api("/api/flows/top/?by=packets")  # the interface with the newest sample: eth0
    assert body["interface"] == "eth0" and body["by"] == "packets"
    assert ends(body) == [DNS, SSH, HTTPS, PING, GRE]


def test_the_window_counts_the_minutes_it_overlaps(api, talkers) -> None:
    assert ends(api("/api/flows/top?window=1m")) == [HTTPS, DNS, PING]  # 12:29 and 12:30
    assert ends(api("/api/flows/top?window=2m")) == [HTTPS, DNS, SSH, PING, GRE]
    assert api("/api/flows/top?window=2m")["flows"][2]["bytes"] == 8000  # 12:28 only
    wide = api("/api/flows/top?window=2h")
    assert ends(wide)[0] == GRE and wide["flows"][0]["bytes"] == 10**9 + 100
    assert ends(api("/api/flows/top?window=all")) == ends(wide)


def test_answer_says_what_it_covers(api, talkers) -> None:
    body = api("/api/flows/top?window=5m&limit=2")
    assert {key: body[key] for key in body if key != "flows"} == {
        "interface": "eth0",
        "window": "5m",
        "since": "2026-11-27T12:25:00Z",  # 12:25:30 is inside the minute of 12:25
        "until": "2026-11-27T12:30:30Z",
        "by": "bytes",
        "limit": 2,
        "flow_table": 4096,
        "flows_dropped": 0,
    }
    assert ends(body) == [HTTPS, DNS]


def test_limit(api, talkers) -> None:
    assert len(api("/api/flows/top?limit=1")["flows"]) == 1
    assert len(api("/api/flows/top?limit=100")["flows"]) == 5
    assert api("/api/flows/top")["limit"] == 20


def test_ties_go_to_the_other_total_then_to_the_flow(api) -> None:
    flow_run()
    flow(0, 17, "10.0.0.1", "10.0.0.2", 5, 500, 0, 0, remote_port=9)
    flow(0, 17, "10.0.0.1", "10.0.0.2", 7, 500, 0, 0, remote_port=8)
    flow(0, 17, "10.0.0.1", "10.0.0.2", 5, 500, 0, 0, remote_port=7)
    flow(0, 17, "10.0.0.1", "10.0.0.2", 7, 400, 0, 0, remote_port=6)
    by_bytes = api("/api/flows/top?by=bytes")["flows"]
    assert [f["remote_port"] for f in by_bytes] == [8, 7, 9, 6]
    by_packets = api("/api/flows/top?by=packets")["flows"]
    assert [f["remote_port"] for f in by_packets] == [8, 6, 7, 9]


def test_protocol_names_and_numbers(api, talkers) -> None:
    flow(0, 58, "2001:db8::1", "2001:db8::9", 1, 64, 1, 64)
    flows = api("/api/flows/top")["flows"]
    assert {(f["protocol"], f["protocol_number"]) for f in flows} == {
        ("tcp", 6),
        ("udp", 17),
        ("icmp", 1),
        ("icmpv6", 58),
        ("47", 47),
    }


def test_names_from_the_hosts_file_only(api, talkers, hosts_file: Path) -> None:
    flows = api("/api/flows/top")["flows"]
    names = {f["remote"]: f["remote_name"] for f in flows}
    assert names == {
        "93.184.216.34": None,  # not in the file: no DNS query, no name
        "10.0.0.53": "resolver",  # the first name of the first line that has it
        "2001:db8::2": "ipv6-peer",  # written another way in the file
        "10.0.0.9": None,
        "10.0.0.7": None,
    }
    assert {f["local_name"] for f in flows} == {None}


def test_known_name_rereads_the_file_when_it_changes(hosts_file: Path) -> None:
    assert known_name("10.0.0.53") == "resolver"
    assert known_name("::ffff:10.0.0.53") == "resolver"
    assert known_name("2001:db8::2") == "ipv6-peer"
    assert known_name("127.0.0.1") == "localhost"
    assert known_name("10.0.0.99") is None
    assert known_name("resolver") is None  # a name is not an address
    hosts_file.write_text("10.0.0.99 newcomer\n")
    assert known_name("10.0.0.99") == "newcomer"
    assert known_name("10.0.0.53") is None
    hosts_file.unlink()
    assert known_name("10.0.0.99") is None


def test_flows_dropped_sums_the_window(api) -> None:
    """Cumulative counters as the sampler records them: 4 dropped long ago, then 2 and 3."""
    run = start_run(started_at=NOW - timedelta(hours=3))
    run.record(counters(flows_dropped=4), NOW - timedelta(hours=2), 1.0)
    run.record(counters(flows_dropped=6), NOW - timedelta(minutes=20), 1.0)
    run.record(counters(flows_dropped=9), NOW - timedelta(seconds=5), 1.0)
    assert api("/api/flows/top?window=1h")["flows_dropped"] == 5
    assert api("/api/flows/top?window=10m")["flows_dropped"] == 3
    assert api("/api/flows/top?window=all")["flows_dropped"] == 9


def test_flows_off_says_so(api) -> None:
    flow_run(flow_table=0)
    body = api("/api/flows/top")
    assert (body["flow_table"], body["flows"]) == (0, [])


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("iface=nope0", "iface"),
        ("iface=", "iface"),
        ("window=", "window"),
        ("window=1y", "window"),
        ("window=0m", "window"),
        ("window=99999d", "window"),
        ("by=foo", "by"),
        ("by=", "by"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
    ],
)
def test_top_bad_parameters_are_400_naming_them(api, talkers, query: str, parameter: str) -> None:
    assert list(api(f"/api/flows/top?{query}", status=400)) == [parameter]


@pytest.mark.parametrize("path", ["/api/flows/top", "/api/flows/live"])
def test_without_samples_is_404(api, path: str) -> None:
    assert "start the sampler" in api(path, status=404)["detail"]


LIVE_ROW = {
    "protocol": 17,
    "local": "10.0.0.1",
    "local_port": 9999,
    "remote": "10.0.0.53",
    "remote_port": 53,
    "rx_bps": [8000.0, 1600.0, 400.0],
    "tx_bps": [4000.0, 800.0, 200.0],
    "rx_pps": [10.0, 2.0, 0.5],
    "tx_pps": [5.0, 1.0, 0.25],
    "rx_packets": 20,
    "rx_bytes": 2000,
    "tx_packets": 10,
    "tx_bytes": 1000,
}


def live_flows(run: SamplerRun, timestamp: datetime = NOW, flows: list | None = None) -> None:
    LiveFlows.objects.create(
        run=run, timestamp=timestamp, seconds=40.0, dropped=2, flows=flows or [LIVE_ROW]
    )


def test_live_is_the_latest_runs_table_with_names(api, hosts_file: Path) -> None:
    live_flows(flow_run())
    assert api("/api/flows/live/?iface=eth0") == {
        "interface": "eth0",
        "timestamp": "2026-11-27T12:30:30Z",
        "seconds": 40.0,
        "windows": [2, 10, 40],
        "flow_table": 4096,
        "dropped": 2,
        "flows": [
            {
                **LIVE_ROW,
                "protocol": "udp",
                "protocol_number": 17,
                "local_name": None,
                "remote_name": "resolver",
            }
        ],
    }


@pytest.mark.parametrize("flow_table", [0, 4096], ids=["flows off", "no table yet"])
def test_live_without_a_table_is_empty(api, flow_table: int) -> None:
    flow_run(flow_table=flow_table)
    assert api("/api/flows/live") == {
        "interface": "eth0",
        "timestamp": None,
        "seconds": 0.0,
        "windows": [2, 10, 40],
        "flow_table": flow_table,
        "dropped": 0,
        "flows": [],
    }


def test_live_bad_interface_is_400(api) -> None:
    flow_run()
    assert list(api("/api/flows/live?iface=nope0", status=400)) == ["iface"]


def test_relay_reads_the_live_flows_of_all_runs_in_one_query(
    django_assert_num_queries, monkeypatch
) -> None:
    """A read of every active run (SQLite's poll, PostgreSQL's on connecting): the active runs,
    their live tables at once, then each run's new samples."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    relay = SampleRelay()  # looks for samples from NOW on
    eth0, veth1, off = flow_run("eth0"), flow_run("veth1"), flow_run("wlan0", flow_table=0)
    live_flows(eth0)
    for run in (eth0, veth1, off):
        run.record(counters(rx_total_packets=2, rx_total_bytes=120), NOW, 1.0)
        run.record(
            counters(rx_total_packets=3, rx_total_bytes=180), NOW + timedelta(seconds=1), 1.0
        )
    with django_assert_num_queries(1 + 1 + 3):
        messages = relay._new_messages(None)
    by_run = {
        (m["interface"], m["timestamp"]): m["flows"] and len(m["flows"]["flows"]) for m in messages
    }
    assert by_run == {
        ("eth0", "2026-11-27T12:30:30Z"): None,  # an older sample of the same poll
        ("eth0", "2026-11-27T12:30:31Z"): 1,
        ("veth1", "2026-11-27T12:30:30Z"): None,
        ("veth1", "2026-11-27T12:30:31Z"): 0,  # no table yet: empty
        ("wlan0", "2026-11-27T12:30:30Z"): None,
        ("wlan0", "2026-11-27T12:30:31Z"): 0,  # flows off: empty
    }
