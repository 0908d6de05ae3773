"""Error answers: JSON that names the problem, and never a 500."""

import logging
from typing import Any

from django.db import DatabaseError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger("netmetrics.api")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a 503 for a database that cannot answer (locked, missing, unreadable)."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, DatabaseError):
        log.warning("database error answering %s: %s", context["request"].path, exc)
        return Response(
            {"detail": f"the database cannot answer right now ({exc}); try again shortly"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    return None
