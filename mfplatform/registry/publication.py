"""Publication of a trained run: the model version row, its files, its vectors in pgvector
with their HNSW index, in one transaction (a failure leaves nothing half-written)."""

from __future__ import annotations

from django.db import transaction

from mfengine.checks import all_passed
from mfplatform.registry.artifacts import (
    checksums,
    new_artifact_dir,
    save_fallbacks,
    save_model,
    store_file,
)
from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.registry.vectors import create_item_index, write_vectors
from mfplatform.training.liveness import lock_active_run
from mfplatform.training.models import TrainingRun
from mfplatform.training.pipeline import TrainedRun


def _next_version(run: TrainingRun) -> int:
    last = ModelVersion.objects.filter(plan=run.plan).order_by("-version").first()
    return 1 if last is None else last.version + 1


def publish(run: TrainingRun, trained: TrainedRun) -> ModelVersion:
    if trained.model is None:
        return publish_fallback(run, trained.prepared, trained.catalogue)
    return publish_mf(run, trained.model, trained.strategy, trained.hyperparameters,
                      trained.prepared, trained.catalogue, trained.report, trained.checks,
                      cold=(trained.cold_items, trained.segments))


def _write_files(run, prepared, catalogue, model=None, cold=(None, None)) -> dict:
    """Every file of the version, before its row: a committed version always has them all (a
    worker killed in between leaves an unreferenced folder, never a version without its
    files). The row's fields that point at them and vouch for them."""
    folder = new_artifact_dir(run)
    if model is not None:
        save_model(folder, model)
    cold_items, segments = cold
    # Where new items and users without events go: registry.cold, serving's bundle.
    if cold_items is not None:
        store_file(folder, "cold.npz", cold_items.save)
    if segments is not None:
        store_file(folder, "segments.npz", segments.save)
    save_fallbacks(folder, prepared, catalogue)
    return {"artifact": folder, "checksums": checksums(folder)}


def _run_fields(run) -> dict:
    """What every version records of the run that made it."""
    return {"tenant": run.tenant, "plan": run.plan, "plan_revision": run.plan_revision,
            "dataset_version": run.dataset_version, "training_run": run,
            "version": _next_version(run)}


def publish_mf(run, model, strategy, training, prepared, catalogue, report, checks,
               cold=(None, None)) -> ModelVersion:
    files = _write_files(run, prepared, catalogue, model, cold)
    item_vectors = model.item_vectors()
    user_vectors = model.user_vectors()
    passed = all_passed(checks)
    with transaction.atomic():
        lock_active_run(run)
        version = ModelVersion.objects.create(
            **_run_fields(run), **files, kind=ModelKind.MF, strategy=strategy,
            hyperparameters=training, dimensions=int(item_vectors.shape[1]),
            status=ModelStatus.CANDIDATE if passed else ModelStatus.REJECTED,
            report=report, checks=checks,
            decision={} if passed else {"verdict": "rejected", "reasons": [
                f"quality check {c['name']} failed: {c['reason']}" for c in checks
                if not c["passed"]]})
        version.n_item_vectors = write_vectors(version, "item", prepared.item_ids, item_vectors)
        version.n_user_vectors = write_vectors(version, "user", prepared.user_ids, user_vectors)
        create_item_index(version)
        version.save(update_fields=["n_item_vectors", "n_user_vectors"])
    return version


def publish_fallback(run, prepared, catalogue) -> ModelVersion:
    """Too little data for MF: popularity + content-based from day one, marked as such."""
    config = run.plan_revision.config
    minimums = config["minimums"]
    files = _write_files(run, prepared, catalogue)
    with transaction.atomic():
        lock_active_run(run)
        version = ModelVersion.objects.create(
            **_run_fields(run), **files, kind=ModelKind.FALLBACK,
            strategy="content_based+popularity", hyperparameters={}, dimensions=0,
            status=ModelStatus.CANDIDATE,
            report={"fallback": True, "dataset": prepared.counts, "minimums": minimums,
                    "reason": (f"dataset below the plan's minimums for MF: "
                               f"{prepared.shape[0]} users, {prepared.shape[1]} items, "
                               f"{prepared.matrix.nnz} interactions; minimums {minimums}")})
    return version
