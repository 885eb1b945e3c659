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


def load_synthetic(tenant, data, prefix: str = "") -> None:
    """Write an mfengine.synthetic data set as the tenant's catalogue and events (ORM bulk
    inserts; the ingestion API has its own tests). External ids get `prefix`."""
    from datetime import UTC, datetime

    from mfplatform.catalog.models import EndUser, Event, EventType, Item

    types = {name: EventType.objects.get_or_create(tenant=tenant, name=name)[0]
             for name in sorted(set(data.event_types.tolist()))}
    items = Item.objects.bulk_create([
        Item(tenant=tenant, external_id=f"{prefix}item-{i}", title=str(data.item_titles[i]),
             category=str(data.item_categories[i]), tags=list(data.item_tags[i]))
        for i in range(data.n_items)])
    users = EndUser.objects.bulk_create([
        EndUser(tenant=tenant, external_id=f"{prefix}user-{u}") for u in range(data.n_users)])
    Event.objects.bulk_create([
        Event(tenant=tenant, user=users[u], item=items[i], event_type=types[t],
              value=float(v), timestamp=datetime.fromtimestamp(int(ts), tz=UTC))
        for u, i, t, v, ts in zip(data.user_ids.tolist(), data.item_ids.tolist(),
                                  data.event_types.tolist(), data.values.tolist(),
                                  data.timestamps.tolist(), strict=True)], batch_size=5000)


def synthetic(n_users=300, n_items=120, n_interactions=6000, seed=0, days=60):
    """A small synthetic data set whose events end about now (inside any plan window)."""
    import time

    from mfengine.synthetic import generate

    return generate(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed,
                    start=int(time.time()) - (days + 1) * 86400, days=days)


TEST_PLAN = {
    "events": {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
    "training": {"strategy": "als", "factors": 16, "iterations": 8, "regularization": 1.0},
    "evaluation": {"k": [5, 10]},
    "minimums": {"users": 50, "items": 20, "interactions": 500},
}
