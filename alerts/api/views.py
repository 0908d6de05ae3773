"""GET /api/alerts (open and recent alerts) and GET/POST /api/alerts/rules."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, permissions
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.drf import CanViewTraffic
from alerts.api.serializers import (
    AlertRuleSerializer,
    AlertsQuerySerializer,
    AlertsSerializer,
)
from alerts.models import Alert, AlertRule
from metrics.api.views import ERRORS, _params


class AlertsView(APIView):
    """The open alerts, and the latest closed ones."""

    @extend_schema(
        parameters=[AlertsQuerySerializer],
        responses={200: AlertsSerializer, 400: ERRORS[400], 503: ERRORS[503]},
    )
    def get(self, request: Request) -> Response:
        params = _params(AlertsQuerySerializer, request)
        alerts, opened = Alert.objects.select_related("rule", "host"), Alert.still_open()
        if params.get("host") is not None:
            alerts, opened = alerts.filter(host=params["host"]), opened.filter(host=params["host"])
        recent = alerts.exclude(ended_at=None).order_by("-ended_at", "-pk")[: params["limit"]]
        data = {"open": opened, "recent": recent}
        return Response(AlertsSerializer(data).data)


class MayAddRules(permissions.BasePermission):
    """Viewers read the rules; adding one takes the model's add permission (or staff)."""

    message = "adding alert rules takes the alerts.add_alertrule permission, or staff"

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        return bool(user.is_staff or user.has_perm("alerts.add_alertrule"))


NOT_ALLOWED = OpenApiResponse(OpenApiTypes.OBJECT, description="{detail}: who may add rules")


@extend_schema_view(
    get=extend_schema(responses={200: AlertRuleSerializer(many=True), 503: ERRORS[503]}),
    post=extend_schema(
        responses={
            201: AlertRuleSerializer,
            400: ERRORS[400],
            401: NOT_ALLOWED,
            403: NOT_ALLOWED,
            503: ERRORS[503],
        }
    ),
)
class AlertRulesView(generics.ListCreateAPIView):
    """Every alert rule; POST adds one (a bad definition is a 400 naming each field to fix)."""

    queryset = AlertRule.objects.select_related("host")
    serializer_class = AlertRuleSerializer
    permission_classes = [CanViewTraffic, MayAddRules]
    parser_classes = [JSONParser]  # a rule is JSON (forms are the admin's)
    pagination_class = None
