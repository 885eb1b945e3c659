from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from mfplatform.experiments.models import Experiment
from mfplatform.experiments.results import experiment_results
from mfplatform.experiments.serializers import (
    ExperimentSerializer,
    PromoteVariantSerializer,
    ResultsSerializer,
)
from mfplatform.experiments.services import (
    ExperimentError,
    VariantInput,
    create_experiment,
    promote_variant,
    start_experiment,
    stop_experiment,
)
from mfplatform.registry.serializers import PromotionLogSerializer
from tenants.api import TenantScopedMixin, request_tenant


def _error(exc: ExperimentError) -> Response:
    if exc.field is not None:
        raise ValidationError({exc.field: [str(exc)]})
    return Response({"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT)


class ExperimentViewSet(TenantScopedMixin, mixins.CreateModelMixin,
                        viewsets.ReadOnlyModelViewSet):
    """A/B experiments between model versions: create (a draft), start, stop, results."""

    model = Experiment
    serializer_class = ExperimentSerializer
    required_scope = "manage"

    def get_queryset(self):
        return super().get_queryset().prefetch_related("variants")

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        variants = [VariantInput(name=v["name"], kind=v["kind"], share=v["share"],
                                 model_version=v.get("model_version_id"),
                                 plan=v.get("plan_id"), is_control=v.get("is_control", False))
                    for v in data["variants"]]
        try:
            experiment = create_experiment(
                request_tenant(request), data["name"], variants, surface=data["surface"],
                click_event=data["click_event"], min_samples=data["min_samples"],
                alpha=data["alpha"])
        except ExperimentError as exc:
            return _error(exc)
        return Response(self.get_serializer(experiment).data, status=status.HTTP_201_CREATED)

    def _transition(self, operation):
        experiment = self.get_object()
        try:
            experiment = operation(request_tenant(self.request), experiment)
        except ExperimentError as exc:
            return _error(exc)
        return Response(self.get_serializer(experiment).data)

    @extend_schema(request=None, responses={200: ExperimentSerializer,
                                            409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._transition(start_experiment)

    @extend_schema(request=None, responses={200: ExperimentSerializer,
                                            409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._transition(stop_experiment)

    @extend_schema(responses=ResultsSerializer)
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        return Response(experiment_results(request_tenant(request), self.get_object()))

    @extend_schema(request=PromoteVariantSerializer,
                   responses={200: PromotionLogSerializer, 409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        experiment = self.get_object()
        body = PromoteVariantSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            entry = promote_variant(request_tenant(request), experiment,
                                    body.validated_data["variant"],
                                    actor=f"api key {request.auth.prefix} ({request.auth.name})",
                                    reason=body.validated_data["reason"])
        except ExperimentError as exc:
            return _error(exc)
        return Response(PromotionLogSerializer(entry).data)
