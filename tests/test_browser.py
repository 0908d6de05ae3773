"""The dashboard in a real browser (Chromium through Playwright) against a real server.

One web server (daphne, `manage.py runserver`) per module on a scratch database, and a writer
process that records samples into that database on command, through SamplerRun.record as the
sampler does: the test decides exactly which values are written and when, and watches them
arrive over the WebSocket. Loopback only.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bpf.classes import CLASS_LABELS, CLASSES
from metrics.hostnames import known_name
from tests.processes import ROOT, WebServer, create_user, free_port, migrated_env
from tests.writer import Writer

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Site:
    """The web server under test; restartable on the same port."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.lingered = 0
        self.web: WebServer | None = None

    def start(self) -> None:
        self.starts += 1
        self.web = WebServer(self.env, self.logs / f"web-{self.starts}.log", self.port)
        self.web.wait_healthy()

    def stop(self) -> None:
        """SIGTERM; SIGKILL after 5 s (daphne sometimes lingers with a WebSocket open)."""
        if self.web is not None:
            web, self.web = self.web, None
            try:
                web.stop(timeout=5)
            except TimeoutError:
                self.lingered += 1  # killed: what a crash looks like to the browser


# Two runs' worth of exact values: rates are these byte and packet counts per 1-second sample.
ETH0_DELTA = {
    "rx_total_bytes": 125_000,
    "rx_total_packets": 100,
    "tx_total_bytes": 25_000,
    "tx_total_packets": 20,
    "rx_tcp_bytes": 100_000,
    "rx_tcp_packets": 80,
    "rx_https_bytes": 75_000,
    "rx_https_packets": 60,
}
ETH1_DELTA = {  # no egress: the tx counters stay 0
    "rx_total_bytes": 5_000,
    "rx_total_packets": 7,
    "rx_udp_bytes": 5_000,
    "rx_udp_packets": 7,
}


def stored_flow(
    protocol: int, local: str, local_port: int, remote: str, remote_port: int, rx: list, tx: list
) -> dict[str, Any]:
    """One LiveFlows entry as the sampler stores it (metrics/flows.py): rx and tx bit/s over the
    last 2, 10 and 40 s, and the 40 s counts, here with 1,000-byte packets."""
    flow: dict[str, Any] = {"protocol": protocol, "local": local, "local_port": local_port}
    flow["remote"] = remote
    flow["remote_port"] = remote_port
    for direction, bps in (("rx", rx), ("tx", tx)):
        flow[f"{direction}_bps"] = bps
        flow[f"{direction}_pps"] = [rate / 8000 for rate in bps]
        flow[f"{direction}_bytes"] = int(bps[2] * 40 / 8)
        flow[f"{direction}_packets"] = flow[f"{direction}_bytes"] // 1000
    return flow


# The top first, as the sampler ranks them; the expected rows below are what the table shows.
TCP6 = stored_flow(
    6, "2001:db8::1", 443, "2001:db8::5", 51234, [1_250_000, 800_000, 400_000], [96_000, 64_000, 0]
)
UDP_LOCALHOST = stored_flow(17, "127.0.0.1", 53, "192.0.2.7", 33333, [8e3, 0, 2e3], [0, 0, 999])
ICMP = stored_flow(1, "192.0.2.10", 0, "198.51.100.9", 0, [1e3, 1e3, 1e3], [1e3, 1e3, 800])
GRE = stored_flow(47, "192.0.2.10", 0, "203.0.113.1", 0, [0, 0, 0], [2e6, 10, 12_345_678])
TCP6_ROW = [
    "[2001:db8::1]:443", "←", "[2001:db8::5]:51234", "TCP",
    "1.25 Mbit/s", "800 kbit/s", "400 kbit/s", "96.0 kbit/s", "64.0 kbit/s", "0 bit/s",
]  # fmt: skip
ICMP_ROW = [
    "192.0.2.10", "⇄", "198.51.100.9", "ICMP",
    "1.00 kbit/s", "1.00 kbit/s", "1.00 kbit/s", "1.00 kbit/s", "1.00 kbit/s", "800 bit/s",
]  # fmt: skip
GRE_ROW = [
    "192.0.2.10", "→", "203.0.113.1", "47",
    "0 bit/s", "0 bit/s", "0 bit/s", "2.00 Mbit/s", "10.0 bit/s", "12.3 Mbit/s",
]  # fmt: skip


# What the screenshots show: a busy desktop's top talkers.
BUSY_FLOWS = [
    stored_flow(6, "192.0.2.10", 50432, "198.51.100.20", 443, [48e6, 31e6, 12e6], [1e6, 7e5, 3e5]),
    stored_flow(17, "2001:db8::10", 41000, "2001:db8:4860::8888", 443, [9e6, 6e6, 4e6], [4e5] * 3),
    stored_flow(6, "192.0.2.10", 22, "203.0.113.50", 61022, [2.4e4, 3e4, 2e4], [4e5, 2e5, 9e4]),
    stored_flow(17, "127.0.0.1", 53, "127.0.0.1", 40001, [3e3, 1.2e3, 800], [3e3, 1.2e3, 800]),
    stored_flow(17, "192.0.2.10", 123, "198.51.100.123", 123, [0, 100, 25], [0, 100, 25]),
    stored_flow(58, "2001:db8::10", 0, "2001:db8::1", 0, [0, 0, 16], [0, 0, 16]),
]


def flow_rows(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#flows-table tbody tr", "rows => rows.map((r) => [...r.cells].map((c) => c.textContent))"
    )


def card_values(page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries(['bandwidth', 'pps', 'tcp', 'https'].map((c) =>
            [c, document.querySelector('#card-' + c + ' .value').dataset.value]))"""
    )


def expected_cards(delta: dict[str, int]) -> dict[str, str]:
    def js(v: float) -> str:  # String(number) in JavaScript for these whole numbers
        return str(int(v)) if float(v).is_integer() else repr(v)

    get = delta.get
    return {
        "bandwidth": js((get("rx_total_bytes", 0) + get("tx_total_bytes", 0)) * 8),
        "pps": js(get("rx_total_packets", 0) + get("tx_total_packets", 0)),
        "tcp": js((get("rx_tcp_bytes", 0) + get("tx_tcp_bytes", 0)) * 8),
        "https": js((get("rx_https_bytes", 0) + get("tx_https_bytes", 0)) * 8),
    }


@contextmanager
def served(tmp: Path, seed: Callable[[Writer], None], **settings: str) -> Iterator[dict[str, Any]]:
    """A scratch database seeded by `seed` through a writer, then the web server on it, with
    these settings in its environment."""
    env = {**migrated_env(tmp / "db.sqlite3"), **settings}
    writer = Writer(env, tmp / "writer.log")
    site = Site(env, tmp)
    try:
        seed(writer)
        site.start()
        yield {"site": site, "writer": writer, "tmp": tmp}
    finally:
        site.stop()
        writer.close()


def seed_two_interfaces(writer: Writer) -> None:
    """eth0 and eth1 have samples; eth0 also an older run with a gap in its history."""
    # eth0's history: an earlier run with samples 50-40 and 20-10 minutes ago, none between.
    writer("start", key="old", iface="eth0", ago=3 * 3600)
    writer("seed", key="old", from_ago=50 * 60, to_ago=40 * 60, every=10, scale=900_000)
    writer("seed", key="old", from_ago=20 * 60, to_ago=10 * 60, every=10, scale=700_000)
    writer("stop", key="old", ago=10 * 60)
    # eth0 now: one sample a second for the last ~4.5 minutes (the live chart's backfill).
    writer("start", key="eth0", iface="eth0", mode="skb", ago=300)
    writer("seed", key="eth0", from_ago=270, to_ago=3, every=1, scale=600_000)
    writer("add", key="eth0", delta=ETH0_DELTA, ago=2)
    # eth1: a second interface with a few samples.
    writer("start", key="eth1", iface="eth1", egress=False, flow_table=0, ago=60)
    for ago in (5, 4, 3):
        writer("add", key="eth1", delta=ETH1_DELTA, ago=ago)


@pytest.fixture(scope="module")
def world(requires_browser, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The seeded database of two interfaces, a writer on it, and the web server."""
    with served(tmp_path_factory.mktemp("browser"), seed_two_interfaces) as world:
        yield world


@pytest.fixture(scope="module")
def browser(requires_browser) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A fresh browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser, url: str, clock: bool = False, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.expected_network_errors = False
        self.expected_unauthorized = False  # after a logout: requests then in flight get 401
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        if clock:  # the page's Date and timers follow page.clock, which the test moves
            self.context.clock.install()
        self.page.goto(url)

    def _console(self, message) -> None:
        if message.type != "error":
            return
        text = message.text
        # While the server is deliberately down, the browser itself logs refused connections,
        # and reset ones for requests in flight when it stopped.
        network = any(f"ERR_CONNECTION_{why}" in text for why in ("REFUSED", "RESET"))
        network = network or text.startswith("WebSocket connection to")
        if network and self.expected_network_errors:
            return
        if "status of 401 (Unauthorized)" in text and self.expected_unauthorized:
            return
        self.errors.append(text)

    def close(self) -> None:
        self.context.close()


@contextmanager
def pages_on(browser, world: dict[str, Any], default: str) -> Iterator[Callable[..., Page]]:
    """Opens pages of world's site (default: the path opened without one); at the end, closes
    them and fails on any JavaScript error they logged."""
    pages: list[Page] = []

    def opener(path: str = default, **context: Any) -> Page:
        page = Page(browser, world["site"].url + path, **context)
        pages.append(page)
        return page

    yield opener
    errors = [error for page in pages for error in page.errors]
    for page in pages:
        page.close()
    assert errors == [], "JavaScript errors in the browser console"


@pytest.fixture
def open_page(browser, world) -> Iterator[Any]:
    with pages_on(browser, world, "/?iface=eth0") as opener:
        yield opener


def live(page) -> None:
    page.wait_for_selector('#ws-state[data-state="live"]', timeout=10_000)


def test_a_new_sample_reaches_the_cards_and_the_live_chart_within_2_s(world, open_page) -> None:
    view = open_page()
    page = view.page
    live(page)
    # The live chart starts full: backfilled from the last 5 minutes of history.
    page.wait_for_function(
        "() => Number(document.getElementById('live-bandwidth').dataset.points) >= 200"
    )
    page.wait_for_function(
        "(want) => document.querySelector('#card-bandwidth .value').dataset.value === want",
        arg=expected_cards(ETH0_DELTA)["bandwidth"],
    )
    before = page.evaluate("() => window.netmetrics.live.length")
    last_before = float(page.get_attribute("#live-bandwidth", "data-last"))

    delta = {**ETH0_DELTA, "rx_total_bytes": 250_000, "rx_tcp_bytes": 200_000, "tx_tcp_bytes": 10}
    delta["rx_https_bytes"] = 123_456
    delta["rx_total_packets"] = 333
    world["writer"]("add", key="eth0", delta=delta)
    written = time.monotonic()
    expected = expected_cards(delta)
    page.wait_for_function(
        """(want) => Object.entries(want).every(([c, v]) =>
            document.querySelector('#card-' + c + ' .value').dataset.value === v)""",
        arg=expected,
        timeout=2_000,
    )
    page.wait_for_function(
        "(n) => window.netmetrics.live.length === n + 1 || window.netmetrics.live.length === 300",
        arg=before,
        timeout=max(100, int((2 - (time.monotonic() - written)) * 1000)),
    )
    assert time.monotonic() - written < 2
    assert card_values(page) == expected
    assert float(page.get_attribute("#live-bandwidth", "data-last")) > last_before
    # The newest point carries the new sample's rates (rx and tx separately).
    newest = page.evaluate(
        "() => { const r = window.netmetrics.live.ring; const i = r.x.length - 1;"
        " return [r.rx_bw[i], r.tx_bw[i], r.rx_pps[i], r.tx_pps[i]]; }"
    )
    assert newest == [250_000 * 8, 25_000 * 8, 333, 20]
    assert page.text_content("#iface-name") == "eth0"
    page.wait_for_selector('#sampler-status[data-state="running"]', timeout=2_000)
    assert page.get_attribute("#sampler-mode", "data-mode") == "skb"
    assert page.get_attribute("#sampler-egress", "data-egress") == "on"
    assert page.is_visible("#admin-link")
    # Light to dark: the charts are drawn again in the other colours, with the same data.
    assert page.locator(".chart .uplot").count() == 5
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => matchMedia('(prefers-color-scheme: dark)').matches")
    assert page.locator(".chart .uplot").count() == 5
    assert page.evaluate("() => window.netmetrics.live.length") == before + 1


def test_history_shows_the_seeded_range_with_its_gap(world, open_page) -> None:
    page = open_page().page
    page.wait_for_selector('#history[data-state="ok"]')
    data = page.evaluate("() => window.netmetrics.history.data")
    assert data["interface"] == "eth0" and data["step"] == "1m"
    assert page.get_attribute("#history-chart", "data-step") == "1m"
    now = time.time()
    rx = dict(zip(data["timestamps"], data["series"]["rx_bandwidth_bps"], strict=True))

    def values(from_min: int, to_min: int) -> list[float | None]:
        return [v for t, v in rx.items() if now - from_min * 60 <= t < now - to_min * 60]

    assert all(v is not None and v > 0 for v in values(49, 41)), "the first seeded stretch"
    assert values(38, 22) and all(v is None for v in values(38, 22)), "the gap between"
    assert all(v is not None and v > 0 for v in values(19, 11)), "the second seeded stretch"
    nulls = sum(v is None for v in rx.values())
    assert int(page.get_attribute("#history-chart", "data-nulls")) == nulls >= 16

    # Drag across the chart: the zoomed range is fetched again at a finer step; double-click
    # goes back to the hour.
    over = page.locator("#history-chart .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.15, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.35, y, steps=5)
    page.mouse.up()
    page.wait_for_selector('#history[data-zoomed="true"][data-state="ok"]')
    assert page.get_attribute("#history-chart", "data-step") == "1s"
    page.dblclick("#history-chart .u-over")
    page.wait_for_selector('#history[data-zoomed="false"][data-state="ok"]')
    assert page.get_attribute("#history-chart", "data-step") == "1m"

    # A custom range, in the browser's local time: 48 to 33 minutes ago, at one point a second.
    page.click('#history-ranges button[data-range="custom"]')
    since, until = page.evaluate(
        """() => [48, 33].map((m) => {
            const d = new Date(Date.now() - m * 60000), p = (n) => String(n).padStart(2, '0');
            const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
            return `${day}T${p(d.getHours())}:${p(d.getMinutes())}`;
        })"""
    )
    page.fill("#range-from", since)
    page.fill("#range-to", until)
    page.click("#history-custom button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('history-chart').dataset.step === '1s'"
        " && document.getElementById('history').dataset.state === 'ok'"
    )
    custom = page.evaluate("() => window.netmetrics.history.data")
    assert len(custom["timestamps"]) == 15 * 60
    rates = custom["series"]["rx_bandwidth_bps"]
    # Samples until 40 minutes ago (a 10 s sample counts from the second it started), then none.
    assert sum(v is not None for v in rates[:300]) >= 280
    assert all(v is None for v in rates[-300:])

    # Longer ranges come from coarser tiers; the CSV link asks for the same range.
    page.click('#history-ranges button[data-range="7d"]')
    page.wait_for_function(
        "() => document.getElementById('history-chart').dataset.step === '1h'"
        " && document.getElementById('history').dataset.state === 'ok'"
    )
    href = page.get_attribute("#history-csv", "href")
    assert "format=csv" in href and "iface=eth0" in href and "step=auto" in href
    response = page.request.get(world["site"].url + href)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert len(response.text().strip().splitlines()) >= 7 * 24


def test_the_usage_view_draws_the_apis_days_and_months_and_the_95th_percentile(
    world, open_page
) -> None:
    page = open_page().page
    page.wait_for_selector('#usage[data-state="ok"]')
    site = world["site"].url

    def api(query: str) -> dict[str, Any]:
        response = page.request.get(f"{site}/api/stats/{query}")
        assert response.status == 200, response.text()
        return response.json()

    def painted(index: int, bars: int) -> int:
        """Coloured pixels of the chart's canvas in a band around period `index`'s bars."""
        return page.evaluate(
            """([i, n]) => {
                const el = document.getElementById('usage-chart');
                const canvas = el.querySelector('canvas');
                const over = el.querySelector('.u-over').getBoundingClientRect();
                const box = canvas.getBoundingClientRect();
                const scale = canvas.width / box.width;
                const x = (over.left - box.left + (i + 0.5) / n * over.width) * scale;
                const top = (over.top - box.top) * scale;
                const px = canvas.getContext('2d').getImageData(
                    Math.round(x - 6 * scale), Math.round(top), Math.round(12 * scale),
                    Math.round(over.height * scale)).data;
                let count = 0;
                for (let k = 3; k < px.length; k += 4) if (px[k] > 0) count += 1;
                return count;
            }""",
            [index, bars],
        )

    # 31 days: the bars are the API's bytes; the seeded traffic is in the last day or two.
    days = api("usage?iface=eth0&by=day&count=31")["periods"]
    data = page.evaluate("() => window.netmetrics.usage.data")
    assert page.get_attribute("#usage-chart", "data-bars") == "31"
    assert data["rx"] == [row["rx_bytes"] for row in days]
    assert data["tx"] == [row["tx_bytes"] for row in days]
    busiest = max(range(31), key=lambda i: days[i]["total_bytes"])
    assert days[busiest]["total_bytes"] > 0 and days[0]["total_bytes"] == 0
    assert painted(busiest, 31) > painted(0, 31) + 100
    # No plan: the cycle is the calendar month, without a quota (no gauge).
    assert page.is_hidden("#usage-gauge")
    assert "no quota set" in page.text_content("#usage-quota")
    # The 95th percentile beside it, as the API gives it.
    p95 = api("percentile?iface=eth0&p=95")["bps"]
    page.wait_for_function("() => document.querySelector('#usage-p95 dd').dataset.value !== ''")
    shown = page.eval_on_selector_all(
        "#usage-p95 dd", "dds => dds.map((dd) => [dd.dataset.dir, Number(dd.dataset.value)])"
    )
    assert dict(shown) == p95
    # 12 months.
    page.click('#usage-by button[data-by="month"]')
    page.wait_for_selector('#usage-chart[data-bars="12"][data-by="month"]')
    months = api("usage?iface=eth0&by=month&count=12")["periods"]
    assert page.evaluate("() => window.netmetrics.usage.data.rx") == [
        row["rx_bytes"] for row in months
    ]


def test_the_interface_selector_switches_and_keeps_it_in_the_url(world, open_page) -> None:
    page = open_page().page
    live(page)
    page.wait_for_selector("#iface-select", state="visible")
    options = page.eval_on_selector_all("#iface-select option", "els => els.map(e => e.value)")
    assert options == ["eth0", "eth1"]
    # One host: no host selector, no fleet overview, no host in the heading or the URL.
    page.wait_for_function("() => window.netmetrics.fleet.hosts.length === 1")
    for selector in ("#host-picker", "#fleet", "#host-name"):
        assert page.is_hidden(selector), selector
    page.select_option("#iface-select", "eth1")
    page.wait_for_function("() => new URL(location.href).searchParams.get('iface') === 'eth1'")
    assert url_params(page) == {"iface": "eth1"}
    page.wait_for_function("() => document.getElementById('iface-name').textContent === 'eth1'")
    page.wait_for_function(
        "(want) => document.querySelector('#card-bandwidth .value').dataset.value === want",
        arg=expected_cards(ETH1_DELTA)["bandwidth"],
    )
    assert card_values(page) == expected_cards(ETH1_DELTA)
    page.wait_for_selector('#sampler-egress[data-egress="off"]')
    live(page)
    # Its history and live chart follow.
    page.wait_for_function("() => (window.netmetrics.history.data || {}).interface === 'eth1'")
    # Back goes back to eth0.
    page.go_back()
    page.wait_for_function("() => document.getElementById('iface-name').textContent === 'eth0'")
    live(page)


def test_the_websocket_reconnects_after_the_server_restarts(world, open_page) -> None:
    view = open_page()
    page = view.page
    site = world["site"]
    live(page)
    view.expected_network_errors = True
    site.stop()
    page.wait_for_function(
        "() => document.getElementById('ws-state').dataset.state !== 'live'", timeout=5_000
    )
    site.start()
    live(page)  # back-off: 1 s, 2 s, 4 s ... while the server was away
    view.expected_network_errors = False
    delta = {**ETH0_DELTA, "tx_total_bytes": 77_777}
    world["writer"]("add", key="eth0", delta=delta)
    page.wait_for_function(
        "(want) => document.querySelector('#card-bandwidth .value').dataset.value === want",
        arg=expected_cards(delta)["bandwidth"],
        timeout=2_000,
    )


def test_the_top_talkers_table_follows_the_live_flows(world, open_page) -> None:
    writer = world["writer"]
    view = open_page()
    page = view.page
    live(page)
    four = {"dropped": 0, "flows": [TCP6, UDP_LOCALHOST, ICMP, GRE]}
    writer("add", key="eth0", delta=ETH0_DELTA, flows=four)
    page.wait_for_function(
        "() => document.querySelectorAll('#flows-table tbody tr').length === 4", timeout=2_000
    )
    # The web server names addresses from its hosts file only, as metrics/hostnames.py does.
    local = known_name("127.0.0.1") or "127.0.0.1"
    udp_row = [f"{local}:53", "←", "192.0.2.7:33333", "UDP"]
    udp_row += ["8.00 kbit/s", "0 bit/s", "2.00 kbit/s", "0 bit/s", "0 bit/s", "999 bit/s"]
    assert flow_rows(page) == [TCP6_ROW, udp_row, ICMP_ROW, GRE_ROW]
    assert page.is_visible("#flows-table") and page.is_hidden("#flows-msg")
    assert page.is_hidden("#flows-dropped")
    assert page.get_attribute("#flows-table tbody tr:first-child td[data-dir=tx]", "title") == (
        "12 pkt/s"  # 96 kbit/s of 1,000-byte packets, over the last 2 s
    )

    # A new order and flows dropped: the rows are reused, the warning shows.
    page.evaluate("() => { window.firstRow = document.querySelector('#flows-table tbody tr'); }")
    writer("add", key="eth0", delta=ETH0_DELTA, flows={"dropped": 3, "flows": [GRE, TCP6]})
    page.wait_for_selector('#flows-dropped[data-dropped="3"]', timeout=2_000)
    assert page.text_content("#flows-dropped") == (
        "3 flows dropped from the kernel's flow table in the last 40 s — the top list is"
        " incomplete; raise --flow-table"
    )
    assert page.is_visible("#flows-dropped")
    assert flow_rows(page) == [GRE_ROW, TCP6_ROW]
    assert page.evaluate(
        "() => document.querySelector('#flows-table tbody tr') === window.firstRow"
    )
    # A message without flows (a sample that a newer one follows at once) changes nothing.
    page.evaluate("() => window.netmetrics.flows.update(null)")
    assert flow_rows(page) == [GRE_ROW, TCP6_ROW]

    # At a phone's width the table scrolls inside its panel; the page does not.
    page.set_viewport_size({"width": 390, "height": 844})
    wrap = page.locator("#flows .table-wrap")
    assert wrap.evaluate("(el) => el.scrollWidth > el.clientWidth")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

    # Nothing in the window: the message instead of the table, no warning.
    writer("add", key="eth0", delta=ETH0_DELTA, flows={"dropped": 0, "flows": []})
    page.wait_for_selector('#flows[data-state="empty"]', timeout=2_000)
    assert page.text_content("#flows-msg") == "No flows in the last 40 s"
    assert page.is_visible("#flows-msg") and page.is_hidden("#flows-table")
    assert page.is_hidden("#flows-dropped")
    assert flow_rows(page) == []

    # eth1's sampler runs with --no-flows.
    page.select_option("#iface-select", "eth1")
    page.wait_for_selector('#flows[data-state="off"]')
    assert page.text_content("#flows-msg") == "Flows are off for this sampler (--no-flows)"
    assert page.is_hidden("#flows-table") and page.is_hidden("#flows-dropped")


@pytest.mark.parametrize(
    "name, viewport, scheme",
    [
        ("phone", {"width": 390, "height": 844}, "light"),
        ("desktop", {"width": 1440, "height": 900}, "light"),
        ("desktop-dark", {"width": 1440, "height": 900}, "dark"),
    ],
)
def test_screenshots(world, open_page, name: str, viewport: dict, scheme: str) -> None:
    busy = {"dropped": 0, "flows": BUSY_FLOWS}
    world["writer"]("add", key="eth0", delta=ETH0_DELTA, flows=busy)
    world["writer"]("seed", key="eth0", from_ago=0, to_ago=0, every=1, scale=600_000)
    view = open_page(viewport=viewport, color_scheme=scheme, device_scale_factor=1)
    page = view.page
    live(page)
    page.wait_for_selector('#history[data-state="ok"]')
    page.wait_for_function(
        "() => Number(document.getElementById('live-bandwidth').dataset.points) >= 200"
    )
    page.wait_for_selector('#flows[data-state="ok"]')
    # Nothing sticks out sideways at any width.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)  # let the share bars' transition finish
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def test_the_live_ring_stays_bounded(world, open_page) -> None:
    """A page left open for days: 3,000 more samples leave 300 points and no extra DOM nodes."""
    page = open_page().page
    live(page)
    page.wait_for_function("() => window.netmetrics.live.length >= 200")
    # The elements are counted before and after in the same task: the page's own fetches
    # (flows, summary) may add rows at any other moment.
    result = page.evaluate(
        """() => {
            const nodes = () => document.getElementsByTagName('*').length;
            const before = nodes();
            const live = window.netmetrics.live;
            const start = live.ring.x[live.length - 1];
            for (let i = 1; i <= 3000; i++) {
                const when = new Date((start + i) * 1000).toISOString();
                live.push({type: 'sample', interface: 'eth0', timestamp: when,
                           rx: {bandwidth_bps: i, packets_per_sec: 1}, tx: null});
            }
            return [live.length, live.ring.rx_bw[live.length - 1],
                    Number(document.getElementById('live-bandwidth').dataset.points),
                    nodes() - before];
        }"""
    )
    assert result == [300, 3000, 300, 0]


def test_the_palette_keeps_its_light_and_dark_colours(world, open_page) -> None:
    """One variable per colour with its light and dark value (light-dark()); the charts get the
    colour of the scheme in use."""
    page = open_page(color_scheme="light").page
    page.wait_for_selector('#history[data-state="ok"]')
    colours = """() => [
        ...['rx', 'tx', 'tcp', 'https', 'dns'].map(window.netmetrics.chartTheme.theme().color),
        window.netmetrics.chartTheme.theme().grid,
        getComputedStyle(document.body).backgroundColor,
        getComputedStyle(document.querySelector('#history-ranges [aria-pressed="true"]')).color,
    ]"""
    hexes = ["#2563eb", "#e8590c", "#2563eb", "#0891b2", "#db2777", "#e9ecf0", "#f4f6f8", "#ffffff"]
    assert page.evaluate(colours) == [rgb(h) for h in hexes]
    page.emulate_media(color_scheme="dark")
    hexes = ["#60a5fa", "#fb923c", "#60a5fa", "#22d3ee", "#f472b6", "#232931", "#0f1216", "#0f1216"]
    assert page.evaluate(colours) == [rgb(h) for h in hexes]


def rgb(hex_colour: str) -> str:
    """A #rrggbb colour as a computed style says it."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def seed_slow_run(writer: Writer) -> None:
    """One run that samples every 5 s (runsampler --interval 5)."""
    writer("start", key="eth5", iface="eth5", interval=5.0, ago=60)
    for ago in (12, 7, 2):
        writer("add", key="eth5", delta=ETH1_DELTA, ago=ago, elapsed=5.0)


@pytest.fixture(scope="module")
def slow_world(requires_browser, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A server of its own whose only run samples every 5 s."""
    with served(tmp_path_factory.mktemp("browser-slow"), seed_slow_run) as world:
        yield world


HEADER = """() => ({
    stale: document.body.dataset.stale,
    hint: document.getElementById('stale-hint').hidden
        ? null : document.getElementById('stale-hint').textContent,
    sampler: document.getElementById('sampler-status').dataset.state,
})"""


def test_a_5_s_run_is_stale_only_after_3_intervals_without_a_sample(slow_world, browser) -> None:
    """The stale threshold is the server's 3 intervals of the run (5 s here), not 3 s: between
    two samples the header says nothing; after 15 s without one it says stale."""
    view = Page(browser, slow_world["site"].url + "/?iface=eth5", clock=True)
    try:
        page = view.page
        live(page)
        # /api/interfaces answered: the page knows the run, and so its interval.
        page.wait_for_selector("#sampler-mode:not([hidden])")
        # The classes come from the server too: the rates table's rows, the mix's legend.
        rows = page.eval_on_selector_all(
            "#rx-tx-table tbody th", "ths => ths.map(t => t.textContent)"
        )
        assert rows == [CLASS_LABELS[c] for c in CLASSES]
        legend = page.eval_on_selector_all(
            "#share-legend li",
            "lis => lis.map(li => li.dataset.class + ' ' + li.querySelector('span').textContent)",
        )
        assert legend == [
            "tcp TCP", "udp UDP", "icmp ICMP", "other Other", "http HTTP", "https HTTPS", "dns DNS",
        ]  # fmt: skip

        # Stop the page's clock, then write a sample: it arrives at one instant of page time.
        page.clock.pause_at(page.evaluate("() => Date.now() / 1000") + 0.5)  # seconds
        delta = {**ETH1_DELTA, "rx_total_bytes": 55_555}
        slow_world["writer"]("add", key="eth5", delta=delta, elapsed=5.0)
        page.wait_for_function(
            "(want) => document.querySelector('#card-bandwidth .value').dataset.value === want",
            arg=str(55_555 * 8 // 5),
            polling=100,
        )
        fresh = {"stale": "false", "hint": None, "sampler": "running"}
        assert page.evaluate(HEADER) == fresh
        # run_for fires the page's timers in order, as the seconds pass: the header's once a
        # second, the polls of /api/interfaces and the summary.
        page.clock.run_for(4_000)  # between two samples of the run (3 s was the old rule)
        assert page.evaluate(HEADER) == fresh
        page.clock.run_for(10_900)  # 14.9 s: the next sample is late, not yet missing
        assert page.evaluate(HEADER) == fresh
        page.clock.run_for(1_100)  # 16 s: three intervals without a sample, and a tick after
        header = page.evaluate(HEADER)
        assert re.fullmatch("stale — no data for 1[56] s", header.pop("hint"))
        assert header == {"stale": "true", "sampler": "stale"}
        assert page.text_content("#sampler-status").startswith("sampler stale — last sample ")
    finally:
        view.close()
    assert view.errors == [], "JavaScript errors in the browser console"


# One sampler counting br0 and eth0, and their host total, at one sample a minute: its runs stay
# "running" for 3 minutes, long enough to read their rates. The rates are exact: bytes * 8 / 60.
BR0_DELTA = {"rx_total_bytes": 5_000_000, "tx_total_bytes": 1_375_000}  # 850 kbit/s
NIC_DELTA = {"rx_total_bytes": 24_600_000, "tx_total_bytes": 6_150_000}  # 4.10 Mbit/s
TOTAL_DELTA = {k: BR0_DELTA[k] + NIC_DELTA[k] for k in BR0_DELTA}  # 4.95 Mbit/s
BUSY_TOTAL_DELTA = {"rx_total_bytes": 80_000_000, "tx_total_bytes": 12_250_000}  # 12.3 Mbit/s
# veth1 is a port of br0: counted in br0, so the total leaves it out.
MEMBERS = ["br0", "eth0"]


def seed_host_total(writer: Writer) -> None:
    """The host total and the interfaces it sums, a stopped veth1 and a stale wlan0."""
    writer("start", key="veth1", iface="veth1", interval=60.0, ago=600)
    writer("add", key="veth1", delta=BR0_DELTA, ago=300, elapsed=60.0)
    writer("stop", key="veth1", ago=240)
    writer("start", key="wlan0", iface="wlan0", ago=120)  # a 1 s sampler, silent for 30 s
    writer("add", key="wlan0", delta=ETH1_DELTA, ago=30)
    for key, delta in (("br0", BR0_DELTA), ("eth0", NIC_DELTA)):
        writer("start", key=key, iface=key, interval=60.0, ago=120)
        writer("add", key=key, delta=delta, ago=1, elapsed=60.0)
    # The total's sample last: it is the newest, so a page without ?iface shows it.
    writer("start", key="all", iface="all", mode="host", interval=60.0, ago=120)
    writer("add", key="all", delta=TOTAL_DELTA, elapsed=60.0, members=MEMBERS)


@pytest.fixture(scope="module")
def host_world(requires_browser, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A server of its own with a host total among its runs."""
    with served(tmp_path_factory.mktemp("browser-host"), seed_host_total) as world:
        yield world


@pytest.fixture
def open_host_page(browser, host_world) -> Iterator[Any]:
    with pages_on(browser, host_world, "/") as opener:
        yield opener


OPTIONS = "s => [...s.options].map((o) => [o.value, o.textContent, o.title])"
HOST_OPTIONS = [
    ["all", "all (host total) · 4.95 Mbit/s", "sums br0, eth0"],
    ["br0", "br0 · 850 kbit/s", ""],
    ["eth0", "eth0 · 4.10 Mbit/s", ""],
    ["veth1", "veth1 (stopped)", ""],
    ["wlan0", "wlan0 (stale)", ""],
]


def wait_for_options(page, want: list[list[str]], timeout: float = 10_000) -> None:
    page.wait_for_function(
        f"(want) => JSON.stringify(({OPTIONS})(document.getElementById('iface-select')))"
        " === JSON.stringify(want)",
        arg=want,
        timeout=timeout,
    )


def test_the_selector_lists_the_host_total_first_with_each_interfaces_rate(
    open_host_page,
) -> None:
    page = open_host_page(viewport={"width": 390, "height": 844}).page
    live(page)
    page.wait_for_selector("#iface-select", state="visible")
    # The total, then the interfaces by name; a rate for each running sampler, the status of the
    # others; the total's tooltip names what it sums.
    wait_for_options(page, HOST_OPTIONS)
    assert page.eval_on_selector("#iface-select", OPTIONS) == HOST_OPTIONS
    # Without ?iface the page shows the newest sample's: the host total's, said as such. The
    # socket is live before its first message arrives: wait for that sample on screen.
    page.wait_for_selector('#iface-name[data-iface]:not([data-iface=""])', timeout=5_000)
    assert page.eval_on_selector("#iface-select", "s => s.value") == "all"
    assert page.get_attribute("#iface-name", "data-iface") == "all"
    assert page.text_content("#iface-name") == "all interfaces (host total)"
    assert page.get_attribute("#iface-name", "title") == "sums br0, eth0"
    assert page.text_content("#sampler-mode") == "sum of interfaces"
    assert page.get_attribute("#card-bandwidth .value", "data-value") == str(4_950_000)
    # The longer labels fit a phone's width.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

    # An interface is said by its name alone.
    page.select_option("#iface-select", "eth0")
    page.wait_for_function("() => document.getElementById('iface-name').textContent === 'eth0'")
    assert page.get_attribute("#iface-name", "data-iface") == "eth0"
    assert page.get_attribute("#iface-name", "title") == "Interface"
    assert page.eval_on_selector("#iface-select", OPTIONS) == HOST_OPTIONS


def test_the_current_entrys_rate_follows_the_live_samples(host_world, open_host_page) -> None:
    """The entry on screen takes its rate from each live message, not the 5 s poll: with
    /api/interfaces held at its old answer, a new sample relabels it within 2 s, in place."""
    page = open_host_page().page
    live(page)
    wait_for_options(page, HOST_OPTIONS)
    page.evaluate(
        "() => { window.totalOption = document.getElementById('iface-select').options[0]; }"
    )
    old = page.request.get(host_world["site"].url + "/api/interfaces")
    assert old.status == 200
    body = old.text()
    page.route(
        re.compile(r"/api/interfaces(\?|$)"),  # with ?host= once the page knows its host
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    writer = host_world["writer"]
    writer("add", key="all", delta=BUSY_TOTAL_DELTA, elapsed=60.0, members=MEMBERS)
    busy = [["all", "all (host total) · 12.3 Mbit/s", "sums br0, eth0"], *HOST_OPTIONS[1:]]
    wait_for_options(page, busy, timeout=2_000)
    # The same option, still selected: only its label changed.
    assert page.evaluate(
        "() => document.getElementById('iface-select').options[0] === window.totalOption"
    )
    assert page.eval_on_selector("#iface-select", "s => s.value") == "all"
    assert page.get_attribute("#card-bandwidth .value", "data-value") == str(12_300_000)

    # Back to the seeded rate, for the other tests of this server.
    writer("add", key="all", delta=TOTAL_DELTA, elapsed=60.0, members=MEMBERS)
    wait_for_options(page, HOST_OPTIONS, timeout=2_000)


# A fleet: three hosts write into one database. web-1 counts eth0 and eth1 and their host total,
# db-1 eth0 and eth2 (no total: its newest sample, eth0's, gives its rate), and backup's sampler
# has been silent for 30 s (stale). At one sample a minute the running ones stay running for
# 3 minutes; their rates are exact: bytes * 8 / 60. web-1 and db-1 both have an eth0.
WEB_ID = "0a1b2c3d-0000-4000-8000-00000000000a"
DB_ID = "0a1b2c3d-0000-4000-8000-00000000000d"
BACKUP_ID = "0a1b2c3d-0000-4000-8000-0000000000b0"
SPARE_ID = "0a1b2c3d-0000-4000-8000-00000000005e"
WEB_ETH0 = {"rx_total_bytes": 60_000_000, "tx_total_bytes": 15_000_000}  # 8 + 2 Mbit/s
WEB_ETH1 = {"rx_total_bytes": 750_000}  # 100 kbit/s
WEB_ALL = {k: WEB_ETH0.get(k, 0) + WEB_ETH1.get(k, 0) for k in WEB_ETH0}  # 8.1 + 2 Mbit/s
DB_ETH0 = {"rx_total_bytes": 9_000_000, "tx_total_bytes": 3_000_000, "rx_total_packets": 6_000}
DB_ETH2 = {"rx_total_bytes": 375_000, "rx_total_packets": 300}  # 50 kbit/s
DB_BUSY = {"rx_total_bytes": 120_000_000, "tx_total_bytes": 3_000_000}  # 16.4 Mbit/s


def seed_fleet(writer: Writer) -> None:
    def start(key: str, host: str, name: str, iface: str, **run: Any) -> None:
        writer("start", key=key, host=host, host_name=name, iface=iface, ago=120, **run)

    start("backup", BACKUP_ID, "backup", "eth0")  # a 1 s sampler, silent for 30 s
    writer("add", key="backup", delta={"rx_total_bytes": 900_000_000}, ago=30)
    start("db-eth2", DB_ID, "db-1", "eth2", interval=60.0)
    writer("add", key="db-eth2", delta=DB_ETH2, ago=3, elapsed=60.0)
    start("db-eth0", DB_ID, "db-1", "eth0", interval=60.0)
    writer("add", key="db-eth0", delta=DB_ETH0, ago=2, elapsed=60.0)
    for key, iface, delta in (("web-eth0", "eth0", WEB_ETH0), ("web-eth1", "eth1", WEB_ETH1)):
        start(key, WEB_ID, "web-1", iface, interval=60.0)
        writer("add", key=key, delta=delta, ago=1, elapsed=60.0)
    # web-1's total last: the newest sample of all, so a page without ?host= shows it.
    start("web-all", WEB_ID, "web-1", "all", mode="host", interval=60.0)
    writer("add", key="web-all", delta=WEB_ALL, elapsed=60.0, members=["eth0", "eth1"])


@pytest.fixture(scope="module")
def fleet_world(requires_browser, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A server of its own on a database that three hosts write into."""
    with served(tmp_path_factory.mktemp("browser-fleet"), seed_fleet) as world:
        yield world


@pytest.fixture
def open_fleet_page(browser, fleet_world) -> Iterator[Any]:
    with pages_on(browser, fleet_world, "/") as opener:
        yield opener


# Host, status, rx, tx, total, interfaces: what each row of the overview reads.
FLEET_ROWS = """() => [...document.querySelectorAll('#fleet-table tbody tr')].map((r) =>
    [...r.cells].slice(0, 6).map((c) => c.textContent))"""
WEB_ROW = ["web-1", "running", "8.10 Mbit/s", "2.00 Mbit/s", "10.1 Mbit/s", "eth0, eth1"]
DB_ROW = ["db-1", "running", "1.20 Mbit/s", "400 kbit/s", "1.60 Mbit/s", "eth0, eth2"]
BACKUP_ROW = ["backup", "stale", "—", "—", "—", "eth0"]
HOST_CHOICES = "s => [...s.options].map((o) => [o.value, o.textContent])"


def wait_for_fleet(page, rows: list[list[str]], timeout: float = 10_000) -> None:
    page.wait_for_function(
        f"(want) => JSON.stringify(({FLEET_ROWS})()) === JSON.stringify(want)",
        arg=rows,
        timeout=timeout,
    )


def wait_for_cards(page, delta: dict[str, int], elapsed: float = 60.0) -> None:
    """The bandwidth and packet cards show a sample of these counts over elapsed seconds."""

    def js(v: float) -> str:  # String(number) in JavaScript
        return str(int(v)) if v.is_integer() else repr(v)

    get = delta.get
    want = {
        "bandwidth": js((get("rx_total_bytes", 0) + get("tx_total_bytes", 0)) * 8 / elapsed),
        "pps": js((get("rx_total_packets", 0) + get("tx_total_packets", 0)) / elapsed),
    }
    page.wait_for_function(
        """(want) => Object.entries(want).every(([c, v]) =>
            document.querySelector('#card-' + c + ' .value').dataset.value === v)""",
        arg=want,
    )


def url_params(page) -> dict[str, str]:
    return page.evaluate("() => Object.fromEntries(new URL(location.href).searchParams)")


def test_the_fleet_overview_lists_every_host_busiest_first_with_stale_ones_marked(
    fleet_world, open_fleet_page
) -> None:
    page = open_fleet_page().page
    live(page)
    page.wait_for_selector("#fleet", state="visible")
    wait_for_fleet(page, [WEB_ROW, DB_ROW, BACKUP_ROW])
    # The stale host says so in words, and is muted (not colour alone: a label, italic rates).
    stale = page.locator(f'#fleet-table tr[data-host="{BACKUP_ID}"]')
    assert stale.get_attribute("data-status") == "stale"
    assert stale.locator(".pill").text_content() == "stale"
    running = page.locator(f'#fleet-table tr[data-host="{WEB_ID}"]')
    colour = "(el) => getComputedStyle(el).color"
    assert stale.locator(".host-choice").evaluate(colour) == rgb("#5c6670")  # --muted
    assert running.locator(".host-choice").evaluate(colour) != rgb("#5c6670")
    assert stale.locator("td[data-dir=rx]").evaluate("(el) => getComputedStyle(el).fontStyle") == (
        "italic"
    )
    # The rates behind the text are the API's exactly.
    assert running.locator("td[data-dir=all]").get_attribute("data-value") == str(10_100_000)
    # It is a table with headers.
    headers = page.eval_on_selector_all(
        "#fleet-table thead th", "ths => ths.map((t) => [t.scope, t.textContent.trim()])"
    )
    assert [h[1] for h in headers] == [
        "Host", "Status", "↓ rx", "↑ tx", "total", "Interfaces", "Last sample",
    ]  # fmt: skip
    assert {h[0] for h in headers} == {"col"}

    # Without ?host= the page shows the newest sample's host: web-1, and its host total.
    page.wait_for_selector('#iface-name[data-iface]:not([data-iface=""])', timeout=5_000)
    assert page.text_content("#host-name") == "web-1"
    assert page.get_attribute("#iface-name", "data-iface") == "all"
    assert running.locator(".host-choice").get_attribute("aria-current") == "true"
    # The host selector comes before the interface selector, in the API's order.
    page.wait_for_selector("#host-select", state="visible")
    assert page.evaluate(
        "() => document.getElementById('host-picker').compareDocumentPosition("
        "document.getElementById('iface-picker')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    assert page.eval_on_selector("#host-select", HOST_CHOICES) == [
        [WEB_ID, "web-1 · 10.1 Mbit/s"],
        [DB_ID, "db-1 · 1.60 Mbit/s"],
        [BACKUP_ID, "backup (stale)"],
    ]
    assert page.eval_on_selector("#host-select", "s => s.value") == WEB_ID

    # db-1 gets busier than web-1: at the next poll (every 5 s, as the interface list) the
    # overview has it first.
    writer = fleet_world["writer"]
    writer("add", key="db-eth0", delta=DB_BUSY, elapsed=60.0)
    busy = ["db-1", "running", "16.0 Mbit/s", "400 kbit/s", "16.4 Mbit/s", "eth0, eth2"]
    wait_for_fleet(page, [busy, WEB_ROW, BACKUP_ROW], timeout=7_000)
    # Back, for the other tests: db-1 at its seeded rate, web-1's total the newest sample.
    writer("add", key="db-eth0", delta=DB_ETH0, elapsed=60.0)
    writer("add", key="web-all", delta=WEB_ALL, elapsed=60.0, members=["eth0", "eth1"])
    wait_for_fleet(page, [WEB_ROW, DB_ROW, BACKUP_ROW], timeout=7_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-fleet.png"))
    # The dark palette's muted colour; at a phone's width the table scrolls inside its panel.
    page.emulate_media(color_scheme="dark")
    assert stale.locator(".host-choice").evaluate(colour) == rgb("#9aa4ae")
    page.set_viewport_size({"width": 390, "height": 844})
    # (The charts follow the new width when their resize observers fire.)
    page.wait_for_function("() => document.documentElement.scrollWidth <= 390", timeout=2_000)
    fleet = page.locator("#fleet .table-wrap")
    assert fleet.evaluate("(el) => el.scrollWidth > el.clientWidth")
    page.screenshot(path=str(ARTIFACTS / "dashboard-fleet-phone-dark.png"))


def test_choosing_a_host_shows_its_interfaces_and_samples_and_survives_a_reload(
    fleet_world, open_fleet_page
) -> None:
    page = open_fleet_page(f"/?host={WEB_ID}").page
    live(page)
    page.wait_for_selector("#host-select", state="visible")
    wait_for_cards(page, WEB_ALL)

    # db-1: its interfaces in the selector, its newest sample (eth0's, not web-1's eth0) on the
    # cards, its id in the URL.
    page.select_option("#host-select", DB_ID)
    page.wait_for_function(
        "(id) => new URL(location.href).searchParams.get('host') === id", arg=DB_ID
    )
    assert url_params(page) == {"host": DB_ID}
    wait_for_options(page, [["eth0", "eth0 · 1.60 Mbit/s", ""], ["eth2", "eth2 · 50.0 kbit/s", ""]])
    wait_for_cards(page, DB_ETH0)
    assert page.text_content("#host-name") == "db-1"
    assert page.get_attribute("#iface-name", "data-iface") == "eth0"
    live(page)
    # Its live samples reach the cards; another host's eth0 does not.
    newer = {**DB_ETH0, "rx_total_bytes": 12_000_000}
    fleet_world["writer"]("add", key="db-eth0", delta=newer, elapsed=60.0)
    wait_for_cards(page, newer)
    fleet_world["writer"]("add", key="db-eth0", delta=DB_ETH0, elapsed=60.0)  # as seeded
    wait_for_cards(page, DB_ETH0)
    page.wait_for_function(
        "(id) => document.querySelector(`#fleet-table tr[data-host='${id}'] .host-choice`)"
        ".getAttribute('aria-current') === 'true'",
        arg=DB_ID,
    )

    # One of its interfaces: the URL keeps both; every API call asks for this host's.
    page.select_option("#iface-select", "eth2")
    page.wait_for_function("() => new URL(location.href).searchParams.get('iface') === 'eth2'")
    assert url_params(page) == {"host": DB_ID, "iface": "eth2"}
    wait_for_cards(page, DB_ETH2)
    page.wait_for_function("() => (window.netmetrics.history.data || {}).interface === 'eth2'")
    page.wait_for_selector('#history[data-state="ok"]')
    for selector in ("#history-csv", "#api-link"):
        assert f"host={DB_ID}" in page.get_attribute(selector, "href")
    page.wait_for_selector('#summary[data-state="ok"][data-iface="eth2"]')
    assert page.get_attribute('#summary [data-field="total_bytes"]', "data-value") == "375000"

    # A reload keeps the host and the interface.
    page.reload()
    live(page)
    wait_for_cards(page, DB_ETH2)
    # (The selectors fill when /api/hosts and /api/interfaces answer, maybe after the cards.)
    page.wait_for_selector("#host-select", state="visible")
    wait_for_options(page, [["eth0", "eth0 · 1.60 Mbit/s", ""], ["eth2", "eth2 · 50.0 kbit/s", ""]])
    assert page.eval_on_selector("#host-select", "s => s.value") == DB_ID
    assert page.eval_on_selector("#iface-select", "s => s.value") == "eth2"
    assert page.text_content("#host-name") == "db-1"

    # A click on a host in the overview shows it: web-1's interfaces, its host total.
    page.click(f'#fleet-table tr[data-host="{WEB_ID}"] .host-choice')
    page.wait_for_function(
        "(id) => new URL(location.href).searchParams.get('host') === id", arg=WEB_ID
    )
    assert url_params(page) == {"host": WEB_ID}
    wait_for_options(
        page,
        [
            ["all", "all (host total) · 10.1 Mbit/s", "sums eth0, eth1"],
            ["eth0", "eth0 · 10.0 Mbit/s", ""],
            ["eth1", "eth1 · 100 kbit/s", ""],
        ],
    )
    wait_for_cards(page, WEB_ALL)
    assert page.get_attribute("#iface-name", "data-iface") == "all"
    # Back: db-1's eth2 again.
    page.go_back()
    wait_for_cards(page, DB_ETH2)
    assert page.eval_on_selector("#host-select", "s => s.value") == DB_ID
    wait_for_options(page, [["eth0", "eth0 · 1.60 Mbit/s", ""], ["eth2", "eth2 · 50.0 kbit/s", ""]])


def test_a_host_named_in_the_url_is_shown_and_its_id_kept(open_fleet_page) -> None:
    page = open_fleet_page("/?host=db-1&iface=eth0").page
    live(page)
    wait_for_cards(page, DB_ETH0)
    page.wait_for_function(
        "(id) => new URL(location.href).searchParams.get('host') === id", arg=DB_ID
    )
    assert url_params(page) == {"host": DB_ID, "iface": "eth0"}
    page.wait_for_function("(id) => document.getElementById('host-select').value === id", arg=DB_ID)


def test_a_status_the_page_does_not_know_is_shown_as_it_is(fleet_world, open_fleet_page) -> None:
    """A host status added later ("catching up") shows as its own label, muted, with no change
    to the page."""
    page = open_fleet_page().page
    hosts = json.loads(page.request.get(fleet_world["site"].url + "/api/hosts").text())
    assert [h["name"] for h in hosts] == ["web-1", "db-1", "backup"]
    hosts[2]["status"] = "catching up"
    page.route(
        re.compile(r"/api/hosts$"),
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(hosts)
        ),
    )
    catching_up = ["backup", "catching up", "—", "—", "—", "eth0"]
    wait_for_fleet(page, [WEB_ROW, DB_ROW, catching_up], timeout=7_000)
    row = page.locator(f'#fleet-table tr[data-host="{BACKUP_ID}"]')
    assert row.get_attribute("data-status") == "catching up"
    assert row.locator(".host-choice").evaluate("(el) => getComputedStyle(el).color") == (
        rgb("#5c6670")
    )
    page.wait_for_function(
        "() => [...document.getElementById('host-select').options].some((o) =>"
        " o.textContent === 'backup (catching up)')"
    )


def test_an_idle_host_is_listed_last_and_shows_that_it_has_no_samples(
    fleet_world, open_fleet_page
) -> None:
    """(Last of the fleet's tests: it adds a host.)"""
    fleet_world["writer"]("host", host=SPARE_ID, host_name="spare")
    page = open_fleet_page(f"/?host={WEB_ID}").page
    live(page)
    wait_for_cards(page, WEB_ALL)
    idle = ["spare", "idle", "—", "—", "—", "—"]
    wait_for_fleet(page, [WEB_ROW, DB_ROW, BACKUP_ROW, idle])
    row = page.locator(f'#fleet-table tr[data-host="{SPARE_ID}"]')
    assert row.locator(".host-choice").evaluate("(el) => getComputedStyle(el).color") == (
        rgb("#5c6670")
    )
    row.locator(".host-choice").click()
    page.wait_for_selector("#empty-state", state="visible")
    assert page.is_hidden("#cards") and page.is_hidden("#history")
    assert page.is_visible("#fleet")
    assert url_params(page) == {"host": SPARE_ID}
    assert page.eval_on_selector("#host-select", "s => s.value") == SPARE_ID
    # Back to a host with samples.
    page.select_option("#host-select", WEB_ID)
    wait_for_cards(page, WEB_ALL)
    assert page.is_visible("#cards")


# ---------------------------------------------------------------- a server that requires a login
PASSWORD = "correct horse battery staple"


def seed_one_interface(writer: Writer) -> None:
    writer("start", key="eth0", iface="eth0", ago=10)
    writer("add", key="eth0", delta=ETH0_DELTA, ago=1)


@pytest.fixture(scope="module")
def login_world(requires_browser, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A server of its own that requires a login (NETMETRICS_AUTH=required), and a viewer."""
    tmp = tmp_path_factory.mktemp("browser-login")
    with served(tmp, seed_one_interface, NETMETRICS_AUTH="required") as world:
        create_user(world["site"].env, "viewer", PASSWORD, viewer=True)
        yield world


# Every WebSocket of the page reports its close code to the test (window.wsClosed) as it closes:
# the page may navigate away at once.
RECORD_CLOSES = """(() => {
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
        constructor(...args) {
            super(...args);
            this.addEventListener('close', (ev) => window.wsClosed(ev.code));
        }
    };
})();"""

# The header's "Log out" button's request, sent from the page without leaving it (the page
# leaves by itself before the answer arrives): a POST with the CSRF token, which the login
# rotated into the cookie.
LOG_OUT = """() => {
    const token = document.cookie.split('; ').find((c) => c.startsWith('csrftoken=')).slice(10);
    fetch('/logout/', {method: 'POST', headers: {'X-CSRFToken': token}});
}"""


def test_a_viewer_logs_in_gets_live_samples_and_logging_out_closes_the_websocket(
    login_world, browser
) -> None:
    site, writer = login_world["site"], login_world["writer"]
    view = Page(browser, "about:blank")
    try:
        closes: list[int] = []
        view.context.expose_function("wsClosed", lambda code: closes.append(code))
        view.context.add_init_script(RECORD_CLOSES)
        page = view.page
        page.goto(site.url + "/")
        assert page.url == site.url + "/login/?next=/"
        page.fill('input[name="username"]', "viewer")
        page.fill('input[name="password"]', PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_url(site.url + "/")
        live(page)
        delta = {**ETH0_DELTA, "rx_total_bytes": 375_000, "rx_total_packets": 300}
        writer("add", key="eth0", delta=delta)
        page.wait_for_function(
            """(want) => Object.entries(want).every(([c, v]) =>
                document.querySelector('#card-' + c + ' .value').dataset.value === v)""",
            arg=expected_cards(delta),
            timeout=2_000,
        )
        assert closes == []

        # The server closes the socket (4401), and the dashboard goes to the login page for it:
        # the logout itself, a fetch, leaves the page where it is.
        view.expected_unauthorized = True
        page.evaluate(LOG_OUT)
        page.wait_for_url(site.url + "/login/?next=%2F", timeout=2_000)
        assert closes == [4401]
        page.goto(site.url + "/")
        assert page.url == site.url + "/login/?next=/"
        assert view.errors == []
    finally:
        view.close()
