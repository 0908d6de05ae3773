"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netmetrics.settings")
django_asgi_app = get_asgi_application()  # set up Django before importing consumers

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from alerts.worker import start_worker  # noqa: E402
from netmetrics.routing import websocket_urlpatterns  # noqa: E402

# Every way of serving this application (manage.py serve and runserver) delivers alert
# notifications from this process, unless NETMETRICS_NOTIFY=0.
if settings.NETMETRICS_NOTIFY:
    start_worker()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The Origin first (a foreign page gets HTTP 403 at the handshake), then the session
        # cookie's user, whom the consumer admits or closes (access/live.py).
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
