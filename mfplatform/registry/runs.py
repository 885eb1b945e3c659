"""A training run end to end: the training layer's stages (dataset, fit, evaluation), then
the registry's publication and promotion decision. It lives in the registry because the
registry may import training, never the other way round."""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mfengine.data import PreparedData
from mfengine.remap import RemappedModel
from mfplatform.registry.artifacts import read_item_ids, read_item_side_model
from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.registry.publication import publish
from mfplatform.registry.services import active_version, apply_retention, decide_promotion
from mfplatform.registry.vectors import drop_vectors
from mfplatform.training.liveness import run_claim
from mfplatform.training.models import RunStatus, TrainingPlan, TrainingRun
from mfplatform.training.pipeline import (
    ActiveModel,
    StageTimer,
    finish_run,
    start_run,
    train_and_evaluate,
)

log = logging.getLogger(__name__)


def execute_run(run: TrainingRun, wait: bool = True) -> ModelVersion | None:
    """Run every stage of `run` (already fetched inside its tenant's context), as its one
    executor (liveness.run_claim): when another process is running it, wait for it to end
    (then give its version, or RunStopped), or with `wait` False return None at once."""
    with run_claim(run.pk, wait) as claimed:
        if not claimed:
            return None
        run.refresh_from_db()  # what the other executor, if any, left of it
        return _execute_claimed(run)


def _execute_claimed(run: TrainingRun) -> ModelVersion:
    existing = ModelVersion.objects.filter(training_run=run).first()
    if existing is not None:  # a retry after publication committed: nothing left to do
        if run.is_active:  # (a version published before gate and status shared a commit)
            with transaction.atomic():
                if not existing.decision:
                    decide_promotion(existing)
                finish_run(run, RunStatus.SUCCEEDED)
        return existing
    start_run(run)
    timer = StageTimer(run)
    trained = train_and_evaluate(
        run, timer, active_model=lambda prepared: active_on_this_split(run.plan, prepared))
    with timer.stage(RunStatus.PUBLISHING), transaction.atomic():
        # One commit for the version, its gate decision and the run's success: nobody sees a
        # succeeded run whose version has no decision yet, and a gate that fails leaves no
        # version behind (the run fails instead).
        version = publish(run, trained)
        decide_promotion(version)
        timer.record_so_far(RunStatus.PUBLISHING)
        finish_run(run, RunStatus.SUCCEEDED)
    if version.kind == ModelKind.MF:
        apply_retention(run.plan, settings.MODEL_RETENTION_KEEP)
    return version


def active_on_this_split(plan: TrainingPlan, prepared: PreparedData) -> ActiveModel | None:
    """The plan's active version with its model answering this run's test: the candidate is
    compared with it on the same split, not with the numbers of its own, older split."""
    version = active_version(plan)
    if version is None:
        return None
    return ActiveModel(model_version=version.pk, version=version.version, report=version.report,
                       model=_remapped_model(version, prepared))


def _remapped_model(version: ModelVersion, prepared: PreparedData) -> RemappedModel | None:
    if version.kind != ModelKind.MF:
        return None
    try:
        model = read_item_side_model(version)  # its users are folded in anew
        item_ids = read_item_ids(version)
        model.fold_in(np.zeros(1, np.int64), np.ones(1, np.float32))
    except (OSError, ValueError, KeyError, IndexError, NotImplementedError) as exc:
        # Files gone, or a plugin strategy without fold-in: only its own report remains.
        log.warning("active v%s not re-evaluated: %s", version.version, exc)
        return None
    return RemappedModel.from_ids(model, item_ids, prepared.item_ids)


def discard_failed_version(sender, run_id: int, **kwargs) -> None:
    """Receiver of training's run_failed (failed, cancelled or reaped). Vectors of a version
    that never committed are rolled back with its transaction; a version that failed after
    committing is marked failed and its vectors dropped."""
    version = ModelVersion.objects.filter(training_run_id=run_id).first()
    if version is not None and version.status == ModelStatus.CANDIDATE:
        drop_vectors(version)
        version.status = ModelStatus.FAILED
        version.vectors_dropped_at = timezone.now()
        version.save(update_fields=["status", "vectors_dropped_at"])
