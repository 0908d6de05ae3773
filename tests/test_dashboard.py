"""The dashboard page and its local assets (no CDN), served without collectstatic."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_dashboard_page_links_local_assets_and_the_admin(client: Client) -> None:
    page = client.get("/").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert {"/static/netmetrics/dashboard.js", "/static/netmetrics/dashboard.css"} <= set(assets)
    assert 'href="/admin/"' in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page), "no external assets"


@pytest.mark.parametrize("path", ["netmetrics/dashboard.js", "netmetrics/dashboard.css"])
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
