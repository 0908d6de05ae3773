"""REST endpoints: thin views over metrics.snapshot, metrics.summary and metrics.talkers."""

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from metrics.api.renderers import FastJSONRenderer, HistoryCSVRenderer
from metrics.api.serializers import (
    FlowsTopQuerySerializer,
    HistoryQuerySerializer,
    HistorySerializer,
    HostQuerySerializer,
    HostSerializer,
    InterfaceQuerySerializer,
    InterfaceSerializer,
    LiveFlowsSerializer,
    RealtimeSerializer,
    SummaryQuerySerializer,
    SummarySerializer,
    TopFlowsSerializer,
)
from metrics.durations import window_start
from metrics.history import history
from metrics.hosts import host_states
from metrics.interfaces import interface_states
from metrics.models import SamplerRun, Series
from metrics.snapshot import Snapshot
from metrics.summary import run_summary, window_bounds, window_summary
from metrics.talkers import live_tables, top_flows

NO_SAMPLES = "no samples yet: start the sampler (sudo make run, or manage.py runsampler)"


class IgnoreClientContentNegotiation(BaseContentNegotiation):
    """Always the view's first renderer, whatever the Accept header says.

    The plain-text endpoints answer the same bytes to every client, as they did as plain Django
    views: a scraper sending ``Accept: application/openmetrics-text`` or a probe sending
    ``Accept: text/plain`` must not get a 406 from DRF's negotiation. The renderer is only used
    for DRF's own error answers (405), which are JSON.
    """

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class PlainTextView(APIView):
    """A GET-only text endpoint that is a DRF view only so that it appears in the OpenAPI schema.

    GET only: HEAD, OPTIONS and the rest get 405 with ``Allow: GET``, as the plain Django views
    did; the body is returned as an HttpResponse, so DRF renders nothing on success.
    """

    http_method_names = ["get"]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = IgnoreClientContentNegotiation


TEXT_503 = OpenApiResponse(OpenApiTypes.STR, description="database unavailable: <cause>")


class HealthView(PlainTextView):
    """200 OK when the web app and its database answer. Open to all (a load balancer's or
    systemd's probe): it tells nothing about traffic."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="OK"),
            (503, "text/plain"): TEXT_503,
        }
    )
    def get(self, request: Request) -> HttpResponse:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            return HttpResponse(
                f"database unavailable: {exc}", status=503, content_type="text/plain"
            )
        return HttpResponse("OK", content_type="text/plain")


health = HealthView.as_view()


# What every endpoint may answer besides 200: a bad parameter, no data yet, a busy database.
ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="{parameter: [reason, ...]}"),
    404: OpenApiResponse(OpenApiTypes.OBJECT, description="{detail}: no samples yet"),
    503: OpenApiResponse(OpenApiTypes.OBJECT, description="{detail}: the database is busy"),
}


def _speaking_run(params: dict[str, Any]) -> SamplerRun:
    """The run speaking for the (validated) host and interface: see InterfaceQuerySerializer."""
    host = params.get("host")
    run = SamplerRun.objects.latest_for(params.get("iface"), host.pk if host else None)
    if run is None:
        raise NotFound(NO_SAMPLES)
    return run


def _series(params: dict[str, Any]) -> Series:
    """The (validated) host's interface, else what _speaking_run picks."""
    host, iface = params.get("host"), params.get("iface")
    if host is not None and iface is not None:
        return Series(host.pk, iface)
    return _speaking_run(params).series


def _params(serializer: type[Serializer], request: Request, **context: Any) -> dict[str, Any]:
    """The request's query parameters, validated: a 400 naming each bad one otherwise."""
    query = serializer(data=request.query_params, context=context)
    query.is_valid(raise_exception=True)
    return query.validated_data


class RealtimeView(APIView):
    """The latest sample's per-second rates and the run's cumulative totals."""

    @extend_schema(
        parameters=[InterfaceQuerySerializer], responses={200: RealtimeSerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        run = _speaking_run(_params(InterfaceQuerySerializer, request))
        if run.last_sample is None:
            raise NotFound(f"no sample of {run.interface} is kept any more (see retention)")
        return Response(RealtimeSerializer(Snapshot.latest(run, timezone.now())).data)


class SummaryView(APIView):
    """Averages, peak and protocol shares over the current run, or over ?window=."""

    @extend_schema(
        parameters=[SummaryQuerySerializer], responses={200: SummarySerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        params = _params(SummaryQuerySerializer, request)
        now = timezone.now()
        bounds = window_bounds(params.get("window"), params.get("since"), params.get("until"), now)
        if bounds is None:
            summary = run_summary(_speaking_run(params), now)
        else:
            summary = window_summary(_series(params), *bounds)
        return Response(SummarySerializer(summary).data)


class HistoryView(APIView):
    """Rates per step over a range, columnar for charts; ?format=csv for a table."""

    renderer_classes = [FastJSONRenderer, HistoryCSVRenderer]

    @extend_schema(
        parameters=[HistoryQuerySerializer], responses={200: HistorySerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        if request.query_params.get("format") == "":
            # DRF takes a blank ?format= as no format at all; the schema's enum says otherwise.
            raise ValidationError({"format": ["may not be blank: csv or json, or leave it out"]})
        params = _params(HistoryQuerySerializer, request, now=timezone.now())
        series = _series(params)
        interface = series.interface
        result = history(
            series,
            params["since"],
            params["until"],
            params["step"],
            params["direction"],
            params["fields"],
        )
        data = {"interface": interface, "direction": params["direction"], **vars(result)}
        # Already in HistorySerializer's shape (ints, floats, None; the schema is from it):
        # re-serializing field by field cost ~15 ms of ~60 for an hour at step=1s.
        response = Response(data)
        if request.accepted_renderer.format == "csv":
            filename = f"netmetrics-{interface}-{params['since']:%Y%m%dT%H%M%S}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class InterfacesView(APIView):
    """Every interface with samples (of ?host=, else of every host by name), the host total
    first: its host, data span, current rates and its sampler's state."""

    @extend_schema(
        parameters=[HostQuerySerializer],
        responses={200: InterfaceSerializer(many=True), 400: ERRORS[400], 503: ERRORS[503]},
    )
    def get(self, request: Request) -> Response:
        host = _params(HostQuerySerializer, request).get("host")
        states = interface_states(timezone.now(), host.pk if host else None)
        return Response(InterfaceSerializer(states, many=True).data)


class HostsView(APIView):
    """Every host whose sampler writes here, the busiest first: its state, its interfaces and
    its current traffic."""

    @extend_schema(responses={200: HostSerializer(many=True), 503: ERRORS[503]})
    def get(self, request: Request) -> Response:
        return Response(HostSerializer(host_states(timezone.now()), many=True).data)


class FlowsTopView(APIView):
    """An interface's flows with the most bytes or packets over a window, from each minute's top."""

    @extend_schema(
        parameters=[FlowsTopQuerySerializer], responses={200: TopFlowsSerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        params = _params(FlowsTopQuerySerializer, request)
        now = timezone.now()
        since = window_start(params["window"], now)
        top = top_flows(
            _series(params), params["window"], since, now, params["by"], params["limit"]
        )
        return Response(TopFlowsSerializer(top).data)


class FlowsLiveView(APIView):
    """The latest run's top flows over its last 40 seconds, as the live dashboard gets them."""

    @extend_schema(
        parameters=[InterfaceQuerySerializer], responses={200: LiveFlowsSerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        run = _speaking_run(_params(InterfaceQuerySerializer, request))
        return Response(LiveFlowsSerializer(live_tables([run])[run.pk]).data)
