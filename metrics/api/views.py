"""REST endpoints: thin views over metrics.snapshot and metrics.summary."""

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.api.serializers import (
    InterfaceQuerySerializer,
    RealtimeSerializer,
    SummaryQuerySerializer,
    SummarySerializer,
    parse_window,
)
from metrics.models import SamplerRun
from metrics.snapshot import Snapshot
from metrics.summary import run_summary, window_summary

NO_SAMPLES = "no samples yet: start the sampler (sudo make run, or manage.py runsampler)"


def health(request: HttpRequest) -> HttpResponse:
    """200 OK when the web app and its database answer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return HttpResponse(f"database unavailable: {exc}", status=503, content_type="text/plain")
    return HttpResponse("OK", content_type="text/plain")


def _latest_run(iface: str | None) -> SamplerRun:
    run = SamplerRun.objects.latest_for(iface)
    if run is None:
        raise NotFound(NO_SAMPLES)
    return run


class RealtimeView(APIView):
    """The latest sample's per-second rates and the run's cumulative totals."""

    def get(self, request: Request) -> Response:
        query = InterfaceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        run = _latest_run(query.validated_data.get("iface"))
        return Response(RealtimeSerializer(Snapshot.latest(run, timezone.now())).data)


class SummaryView(APIView):
    """Averages, peak and protocol shares over the current run, or over ?window=."""

    def get(self, request: Request) -> Response:
        query = SummaryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        run = _latest_run(query.validated_data.get("iface"))
        window = query.validated_data.get("window")
        now = timezone.now()
        if window is None:
            summary = run_summary(run, now)
        else:
            summary = window_summary(run.interface, window, parse_window(window), now)
        return Response(SummarySerializer(summary).data)
