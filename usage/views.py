"""GET /api/stats/usage and /api/stats/percentile: thin views over usage.report and
usage.percentile, selecting host and interface as every other endpoint does."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.api.views import ERRORS, _params, _series
from metrics.durations import floor
from usage.percentile import percentile
from usage.report import usage
from usage.serializers import (
    PercentileQuerySerializer,
    PercentileSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)


class UsageView(APIView):
    """Bytes received and sent per day, month or billing cycle (NETMETRICS_TIME_ZONE), the
    current period projected at today's pace, cycles against the interface's quota."""

    @extend_schema(parameters=[UsageQuerySerializer], responses={200: UsageSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        params = _params(UsageQuerySerializer, request)
        report = usage(
            _series(params),
            params["by"],
            params["count"],
            timezone.now(),
            settings.NETMETRICS_TIME_ZONE,
        )
        return Response(UsageSerializer(report).data)


class PercentileView(APIView):
    """The p-th percentile (nearest rank) of the 5-minute (?bucket=) average bit/s over a
    window ending now, per direction, from the minute tier."""

    @extend_schema(
        parameters=[PercentileQuerySerializer], responses={200: PercentileSerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        params = _params(PercentileQuerySerializer, request)
        until = floor(timezone.now(), params["bucket"])
        since = until - params["window"]
        result = percentile(_series(params), since, until, params["bucket"], params["p"])
        return Response(PercentileSerializer(result).data)
