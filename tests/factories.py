"""Small builders for tenant-owned rows; call them inside the tenant's context."""

from __future__ import annotations

from django.utils import timezone

from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.training.models import DatasetVersion, PlanRevision, RunStatus, TrainingRun
from mfplatform.training.services import create_plan


def make_plan(tenant, name: str = "default", **config):
    return create_plan(tenant, name, config)


def make_run(plan, status: str = RunStatus.SUCCEEDED) -> TrainingRun:
    revision = PlanRevision.objects.get(plan=plan, revision=plan.revision)
    return TrainingRun.objects.create(tenant=plan.tenant, plan=plan, plan_revision=revision,
                                      status=status, cutoff=timezone.now())


def make_dataset(run: TrainingRun, content_hash: str = "0" * 64) -> DatasetVersion:
    dataset = DatasetVersion.objects.create(
        tenant=run.tenant, plan_revision=run.plan_revision, cutoff=run.cutoff,
        content_hash=content_hash, n_users=0, n_items=0, n_interactions=0, artifact="none")
    run.dataset_version = dataset
    run.save(update_fields=["dataset_version"])
    return dataset


def make_model_version(plan, status: str = ModelStatus.CANDIDATE, report: dict | None = None,
                       version: int | None = None, strategy: str = "als") -> ModelVersion:
    run = make_run(plan)
    dataset = make_dataset(run)
    last = ModelVersion.objects.filter(plan=plan).order_by("-version").first()
    return ModelVersion.objects.create(
        tenant=plan.tenant, plan=plan, plan_revision=run.plan_revision, dataset_version=dataset,
        training_run=run, version=version or (last.version + 1 if last else 1),
        kind=ModelKind.MF, strategy=strategy, status=status, report=report or {},
        dimensions=4)
