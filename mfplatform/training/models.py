"""Training plans (versioned), immutable dataset versions and training runs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from tenants.models import TenantOwned


class TrainingPlan(TenantOwned):
    """What to train for a tenant. `config` is validated (training.plans) and every change
    creates a new PlanRevision, so runs record exactly the configuration they used."""

    name = models.CharField(max_length=100)
    config = models.JSONField()
    revision = models.PositiveIntegerField(default=1, editable=False)
    is_active = models.BooleanField(default=True)
    # The plan whose active model version serves the tenant's recommendations.
    is_serving = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="unique_plan_name"),
            models.UniqueConstraint(fields=["tenant"], condition=Q(is_serving=True),
                                    name="one_serving_plan_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (rev {self.revision})"


class PlanRevision(TenantOwned):
    plan = models.ForeignKey(TrainingPlan, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    config = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plan", "-revision"]
        constraints = [models.UniqueConstraint(fields=["plan", "revision"],
                                               name="unique_plan_revision")]

    def __str__(self) -> str:
        return f"{self.plan.name} rev {self.revision}"


class DatasetVersion(TenantOwned):
    """The prepared training matrix at a cutoff: immutable once written."""

    plan_revision = models.ForeignKey(PlanRevision, on_delete=models.PROTECT,
                                      related_name="datasets")
    cutoff = models.DateTimeField()
    content_hash = models.CharField(max_length=64)
    n_users = models.PositiveIntegerField()
    n_items = models.PositiveIntegerField()
    n_interactions = models.PositiveBigIntegerField()
    # Events read, kept, and dropped by each filter (bot, internal, consent, invalid item...).
    counts = models.JSONField(default=dict)
    artifact = models.CharField(max_length=300)  # path in the default storage
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["plan_revision", "cutoff"],
                                               name="one_dataset_per_revision_and_cutoff")]

    def __str__(self) -> str:
        return f"dataset {self.pk} @ {self.cutoff:%Y-%m-%d %H:%M} ({self.content_hash[:10]})"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    BUILDING_DATASET = "building_dataset"
    TRAINING = "training"
    EVALUATING = "evaluating"
    PUBLISHING = "publishing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = [RunStatus.QUEUED, RunStatus.BUILDING_DATASET, RunStatus.TRAINING,
                       RunStatus.EVALUATING, RunStatus.PUBLISHING]


class TrainingRun(TenantOwned):
    plan = models.ForeignKey(TrainingPlan, on_delete=models.CASCADE, related_name="runs")
    plan_revision = models.ForeignKey(PlanRevision, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=20, default="api")  # api, admin, command, schedule
    cutoff = models.DateTimeField(null=True, blank=True)
    dataset_version = models.ForeignKey(DatasetVersion, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="runs")
    # {"iteration": 3, "iterations": 15, "loss": 0.12}
    progress = models.JSONField(default=dict, blank=True)
    # Seconds per stage: {"building_dataset": 1.2, "training": 4.0, ...}
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Written by the worker at every stage change and progress report; a run whose heartbeat
    # is older than TRAINING_RUN_STALE_SECONDS has lost its worker (training.liveness).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        constraints = [
            # One run per plan at a time, enforced by the database (a second request is a 409).
            models.UniqueConstraint(fields=["plan"], condition=Q(status__in=ACTIVE_RUN_STATUSES),
                                    name="one_active_run_per_plan"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.plan.name}: {self.status}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES
