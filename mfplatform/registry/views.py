from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from mfplatform.registry.models import ModelVersion
from mfplatform.registry.report_page import render_report_html
from mfplatform.registry.serializers import (
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    PromoteSerializer,
    PromotionLogSerializer,
    ReasonSerializer,
)
from mfplatform.registry.services import RegistryError, history, promote, rollback
from tenants.api import TenantScopedMixin


class ModelVersionViewSet(TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Model versions of the tenant's plans; promote and roll back with a reason."""

    model = ModelVersion
    required_scope = {"GET": "recommend", "*": "manage"}

    def get_serializer_class(self):
        return ModelVersionDetailSerializer if self.action == "retrieve" else \
            ModelVersionSerializer

    def get_queryset(self):
        queryset = super().get_queryset().select_related("plan_revision")
        params = self.request.query_params
        if params.get("plan"):
            if not params["plan"].isdigit():
                raise ValidationError({"plan": ["expected a plan id (an integer)"]})
            queryset = queryset.filter(plan=int(params["plan"]))
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        return queryset

    def _actor(self, request) -> str:
        return f"api key {request.auth.prefix} ({request.auth.name})"

    def _switch(self, request, operation, body_serializer=ReasonSerializer):
        version = self.get_object()
        body = body_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            entry = operation(version, actor=self._actor(request), **body.validated_data)
        except RegistryError as exc:
            return Response({"detail": str(exc), "code": "conflict"},
                            status=status.HTTP_409_CONFLICT)
        return Response(PromotionLogSerializer(entry).data)

    @extend_schema(request=PromoteSerializer, responses={200: PromotionLogSerializer,
                                                          409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        return self._switch(request, promote, PromoteSerializer)

    @extend_schema(request=ReasonSerializer, responses={200: PromotionLogSerializer,
                                                         409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        return self._switch(request, rollback)

    @extend_schema(responses={(200, "text/html"): OpenApiResponse(description="report page")})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        version = self.get_object()
        return HttpResponse(render_report_html(version, log=history(version)),
                            content_type="text/html; charset=utf-8")
