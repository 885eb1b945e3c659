from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from mfplatform.training.liveness import RunNotCancellable, cancel_run
from mfplatform.training.models import DatasetVersion, TrainingPlan, TrainingRun
from mfplatform.training.serializers import (
    CancelRunSerializer,
    DatasetVersionSerializer,
    TrainingPlanSerializer,
    TrainingRunSerializer,
)
from mfplatform.training.services import RunInProgress, create_plan, queue_run, update_plan
from tenants.api import TenantScopedMixin, request_tenant

# A 409 about a run: the error, and the run that is in the way (running, or already ended).
RUN_CONFLICT = inline_serializer("RunConflict", {
    "detail": serializers.CharField(), "code": serializers.CharField(),
    "run": TrainingRunSerializer()})


class TrainingPlanViewSet(TenantScopedMixin, viewsets.ModelViewSet):
    """Training plans: a JSON configuration (PlanConfig) kept in revisions. PATCH merges
    the config section by section, PUT replaces it; a plan with runs cannot be deleted (409)."""

    model = TrainingPlan
    serializer_class = TrainingPlanSerializer
    required_scope = "manage"

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = create_plan(request_tenant(self.request), data["name"],
                                          data.get("config") or {},
                                          is_serving=data.get("is_serving"))

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        config = data.pop("config", None)
        serializer.instance = update_plan(serializer.instance, config=config, **data)

    @extend_schema(request=None, responses={202: TrainingRunSerializer, 409: RUN_CONFLICT})
    @action(detail=True, methods=["post"])
    def train(self, request, pk=None):
        """Queue a training run of the plan for the worker; 409 while one is queued or
        running."""
        plan = self.get_object()
        try:
            run = queue_run(request_tenant(request), plan, trigger="api")
        except RunInProgress as busy:
            return Response({"detail": f"plan {plan.pk} already has run {busy.run.pk} "
                                       f"{busy.run.status}", "code": "run_in_progress",
                             "run": TrainingRunSerializer(busy.run).data},
                            status=status.HTTP_409_CONFLICT)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunViewSet(TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Training runs: status, progress, per-stage timings, heartbeat and error."""

    model = TrainingRun
    serializer_class = TrainingRunSerializer
    required_scope = "manage"

    def get_queryset(self):
        queryset = super().get_queryset().select_related("plan_revision", "model_version")
        plan = self.request.query_params.get("plan")
        return queryset.filter(plan_id=plan) if plan and plan.isdigit() else queryset

    @extend_schema(request=CancelRunSerializer, responses={
        200: TrainingRunSerializer,
        409: RUN_CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a queued or running run at once: its plan is free for a new run, and the
        worker stops at its next progress report without publishing."""
        run = self.get_object()
        body = CancelRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        actor = f"api key {request.auth.prefix} ({request.auth.name})"
        try:
            run = cancel_run(run, body.validated_data["reason"] or "no reason given", actor)
        except RunNotCancellable as exc:
            return Response({"detail": str(exc), "code": "run_not_active",
                             "run": TrainingRunSerializer(exc.run).data},
                            status=status.HTTP_409_CONFLICT)
        return Response(TrainingRunSerializer(run).data)


class DatasetVersionViewSet(TenantScopedMixin, mixins.ListModelMixin,
                            mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Dataset versions: the immutable training data of a run (cutoff, counts per filter,
    content hash)."""

    model = DatasetVersion
    serializer_class = DatasetVersionSerializer
    required_scope = "manage"

    def get_queryset(self):
        return super().get_queryset().select_related("plan_revision")
