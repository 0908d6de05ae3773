"""The dashboard page and its local assets (no CDN), served without collectstatic."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_dashboard_page_links_local_assets_and_the_admin(client: Client) -> None:
    page = client.get("/").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    scripts = {f"/static/netmetrics/{name}.js" for name in ("units", "flows", "dashboard")}
    assert {"/static/netmetrics/dashboard.css", *scripts} <= set(assets)
    assert 'href="/admin/"' in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page), "no external assets"


def text(html: str) -> str:
    """What a piece of markup reads as: its text, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def test_the_top_talkers_panel_is_an_accessible_table(client: Client) -> None:
    page = client.get("/").content.decode()
    panel = re.search(r'<section id="flows".*?</section>', page, re.S).group(0)
    caption = re.search(r"<caption[^>]*>(.*?)</caption>", panel, re.S).group(1)
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


@pytest.mark.parametrize(
    "path", ["netmetrics/dashboard.js", "netmetrics/flows.js", "netmetrics/dashboard.css"]
)
def test_assets_are_served(client: Client, path: str) -> None:
    response = client.get(f"/static/{path}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)


def test_api_docs_use_local_assets(client: Client) -> None:
    page = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200
    assert client.get("/api/schema/").status_code == 200
