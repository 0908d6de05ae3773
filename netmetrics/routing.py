from typing import Any

from django.urls import re_path

from metrics.consumers import MetricsConsumer

# Django's stubs type re_path's view as an HTTP view; channels' URLRouter takes ASGI apps.
websocket_urlpatterns: list[Any] = [
    re_path(r"^ws/metrics/?$", MetricsConsumer.as_asgi()),  # type: ignore[arg-type]
]
