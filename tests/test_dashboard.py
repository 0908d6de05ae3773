"""The dashboard page and its local assets (no CDN), served without collectstatic."""

import json
import re

import pytest
from django.http import StreamingHttpResponse
from django.test import Client, override_settings

from bpf.classes import APP_PROTOCOLS, CLASS_LABELS, CLASSES
from metrics.models import SamplerRun
from tests.samples import at, counters, start_run

pytestmark = pytest.mark.django_db


def test_dashboard_page_links_local_assets_and_the_admin(client: Client) -> None:
    page = client.get("/").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    scripts = {f"/static/netmetrics/{name}.js" for name in ("units", "flows", "dashboard")}
    assert {"/static/netmetrics/dashboard.css", *scripts} <= set(assets)
    assert 'href="/admin/"' in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page), "no external assets"


def search(pattern: str, string: str) -> re.Match[str]:
    found = re.search(pattern, string, re.S)
    assert found, pattern
    return found


def text(html: str) -> str:
    """What a piece of markup reads as: its text, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def test_the_top_talkers_panel_is_an_accessible_table(client: Client) -> None:
    page = client.get("/").content.decode()
    panel = search(r'<section id="flows".*?</section>', page).group(0)
    caption = search(r"<caption[^>]*>(.*?)</caption>", panel).group(1)
    assert "2, 10 and 40 seconds" in text(caption)
    headers = [text(th) for th in re.findall(r"<th [^>]*>(.*?)</th>", panel, re.S)]
    assert headers == [
        "Local", "Direction", "Remote", "Protocol", "rx (in)", "tx (out)",
        "2 s", "10 s", "40 s", "2 s", "10 s", "40 s",
    ]  # fmt: skip
    # Rows come from the live messages; until the first, the panel says it is waiting.
    assert re.search(r"<tbody>\s*</tbody>", panel)
    assert 'data-state="waiting"' in panel
    assert "Waiting for the sampler's flows" in text(panel)
    assert re.search(r'<p id="flows-dropped"[^>]*hidden', panel)


def test_the_fleet_overview_is_an_accessible_table_hidden_until_there_are_hosts(
    client: Client,
) -> None:
    page = client.get("/").content.decode()
    panel = search(r'<section id="fleet"[^>]*>.*?</section>', page).group(0)
    assert re.match(r'<section id="fleet"[^>]*\bhidden\b', panel), "fleet.js shows it"
    caption = search(r"<caption[^>]*>(.*?)</caption>", panel).group(1)
    assert "busiest first" in text(caption)
    headers = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', panel, re.S)
    assert [text(th) for th in headers] == [
        "Host", "Status", "↓ rx", "↑ tx", "total", "Interfaces", "Last sample",
    ]  # fmt: skip
    assert re.search(r"<tbody>\s*</tbody>", panel)
    # The host selector, hidden too, comes before the interface selector.
    host = search(r'<label[^>]*id="host-picker"[^>]*>', page)
    assert "hidden" in host.group(0)
    assert host.start() < page.index('id="iface-picker"')
    assert 'aria-label="Host"' in page


@pytest.mark.parametrize(
    "path",
    [
        "netmetrics/dashboard.js",
        "netmetrics/flows.js",
        "netmetrics/fleet.js",
        "netmetrics/dashboard.css",
    ],
)
def test_assets_are_served(client: Client, path: str) -> None:
    response = client.get(f"/static/{path}")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response.getvalue()


def test_api_docs_use_local_assets(client: Client) -> None:
    page = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200
    assert client.get("/api/schema/").status_code == 200


def rules(page: str) -> dict:
    """The rules the page hands its scripts: the JSON of <script id="dashboard-rules">."""
    found = re.findall(r'<script id="dashboard-rules" type="application/json">(.*?)</script>', page)
    assert len(found) == 1
    return json.loads(found[0])


def mix_hint(page: str) -> str:
    return text(search(r'<p class="muted small hint">Bars:.*?</p>', page).group(0))


def test_the_page_carries_the_servers_classes_ports_and_stale_factor(client: Client) -> None:
    page = client.get("/").content.decode()
    assert rules(page) == {
        "classes": [
            "total", "ipv4", "ipv6", "tcp", "udp", "icmp", "other", "http", "https", "dns",
            "syn", "synack", "rst", "fin",
        ],
        "labels": {
            "total": "Total", "ipv4": "IPv4", "ipv6": "IPv6", "tcp": "TCP", "udp": "UDP",
            "icmp": "ICMP", "other": "Other", "http": "HTTP", "https": "HTTPS", "dns": "DNS",
            "syn": "TCP SYN", "synack": "TCP SYN-ACK", "rst": "TCP RST", "fin": "TCP FIN",
        },
        "transport": ["tcp", "udp", "icmp", "other"],
        "app": ["http", "https", "dns"],
        "app_ports": {"http": [80], "https": [443], "dns": [53]},
        "live_intervals": 3,
        "host_total": "all",
        "login_url": "/login/",
    }  # fmt: skip
    # ... which are bpf.classes' and the model's, not a copy of them.
    got = rules(page)
    assert got["classes"] == list(CLASSES) and got["labels"] == CLASS_LABELS
    assert list(CLASS_LABELS) == list(CLASSES)
    assert got["app"] == list(APP_PROTOCOLS)
    assert got["live_intervals"] == SamplerRun.LIVE_INTERVALS
    assert mix_hint(page).endswith("(HTTP: TCP 80, HTTPS: TCP 443, DNS: port 53).")
    # The scripts that read them load after the rules and the shared API helper.
    scripts = re.findall(r'<script src="/static/netmetrics/(\w+)\.js"', page)
    assert scripts == [
        *("units", "api", "charts", "history", "flows", "fleet", "usage", "dashboard", "alerts")
    ]
    assert page.index('id="dashboard-rules"') < page.index("netmetrics/api.js")


@override_settings(NETMETRICS_APP_PORTS={"http": (8080, 8000), "https": (8443,), "dns": (5353,)})
def test_the_application_ports_follow_the_setting(client: Client) -> None:
    page = client.get("/").content.decode()
    assert rules(page)["app_ports"] == {"http": [8080, 8000], "https": [8443], "dns": [5353]}
    assert mix_hint(page).endswith("(HTTP: TCP 8080 or 8000, HTTPS: TCP 8443, DNS: port 5353).")
    assert not re.search(r"\b(80|443|53)\b", mix_hint(page)), "no default port left"


@override_settings(NETMETRICS_APP_PORTS={"dns": (53, 5353)})
def test_a_class_the_setting_leaves_out_keeps_its_default_ports(client: Client) -> None:
    page = client.get("/").content.decode()
    assert rules(page)["app_ports"] == {"http": [80], "https": [443], "dns": [53, 5353]}
    assert mix_hint(page).endswith("(HTTP: TCP 80, HTTPS: TCP 443, DNS: ports 53 or 5353).")


def test_the_stale_factor_is_the_runs_live_rule(client: Client, monkeypatch) -> None:
    """One constant: a run of interval 5 is live for 3 intervals after its sample, and the page
    says 3; change the constant and both follow."""
    run = start_run(interval=5.0)
    run.record(counters(rx_total_packets=1, rx_total_bytes=60), at(5), 5.0)
    run.refresh_from_db()
    assert run.is_running(at(5 + 14.9)) and not run.is_running(at(5 + 15))
    monkeypatch.setattr(SamplerRun, "LIVE_INTERVALS", 4)
    assert run.is_running(at(5 + 19.9)) and not run.is_running(at(5 + 20))
    assert run.status(at(5 + 19.9)) == "running" and run.status(at(5 + 20)) == "stale"
    assert rules(client.get("/").content.decode())["live_intervals"] == 4
