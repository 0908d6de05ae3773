"""The dashboard's alert banner in a real browser: it appears when an alert opens and goes when
it closes, pushed over the live WebSocket (the page's own refresh is a minute away)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import manage_ok
from tests.test_browser import browser, live, pages_on, served  # noqa: F401  (browser: a fixture)
from tests.writer import Writer

OPEN = (
    "from django.utils import timezone\n"
    "from alerts.models import Alert, AlertRule\n"
    "from metrics.models import Host, Series\n"
    "rule = AlertRule.objects.create(name='busy', metric='rx_bps', level=8000, clear_level=4000)\n"
    "Alert.open(rule, Series(Host.objects.local().pk, 'eth0'), timezone.now(), 9000.0)\n"
)
CLOSE = (
    "from django.utils import timezone\n"
    "from alerts.models import Alert\n"
    "Alert.objects.get().close(timezone.now())\n"
)


def seed(writer: Writer) -> None:
    writer("start", key="eth0", iface="eth0", ago=10)
    for ago in (3, 2, 1):
        writer("add", key="eth0", delta={"rx_total_bytes": 1000, "rx_total_packets": 2}, ago=ago)


@pytest.fixture
def world(requires_browser, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with served(tmp_path, seed) as world:
        yield world


def test_the_banner_appears_when_an_alert_opens_and_goes_when_it_closes(
    browser,  # noqa: F811  (the fixture imported above)
    world,
) -> None:
    env = world["site"].env
    with pages_on(browser, world, "/?iface=eth0") as open_page:
        page = open_page().page
        live(page)
        assert page.is_hidden("#alert-banner")
        manage_ok(env, "opening an alert", "shell", "-c", OPEN)
        page.wait_for_selector("#alert-banner:not([hidden])", timeout=5_000)
        assert page.inner_text("#alert-banner strong") == "1 alert open"
        [line] = page.eval_on_selector_all(
            "#alert-banner li", "items => items.map(i => i.textContent)"
        )
        assert re.fullmatch(
            r"busy: rx_bps above 8\.00 kbit/s on \S+ eth0 since \d\d:\d\d:\d\d "
            r"\(9\.00 kbit/s when it opened, peak 9\.00 kbit/s\)",
            line,
        ), line
        manage_ok(env, "closing the alert", "shell", "-c", CLOSE)
        page.wait_for_selector("#alert-banner", state="hidden", timeout=5_000)
