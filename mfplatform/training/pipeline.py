"""One training run, stage by stage: dataset -> fit -> evaluation -> publication.

    queued -> building_dataset -> training -> evaluating -> publishing -> succeeded | failed

The served model is fitted on the whole dataset version; the training stage also fits the
same configuration on the split's training part, which the evaluation stage measures on the
held-out part (the test events are never seen by the model being measured). Everything runs
inside the tenant's context, so row-level security guarantees the run reads only its tenant's
rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

import mfengine
from mfengine.baselines import ContentRecommender, PopularityRecommender, item_tokens
from mfengine.checks import all_passed, check_model
from mfengine.evaluation import temporal_split_mask
from mfengine.remap import RemappedModel
from mfengine.report import build_report
from mfplatform.catalog.models import Item
from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.registry.services import apply_retention, decide_promotion
from mfplatform.registry.vectors import create_item_index, drop_vectors, write_vectors
from mfplatform.training.dataset import EventArrays, build_dataset_version, prepare
from mfplatform.training.liveness import RunStopped, beat, lock_active_run
from mfplatform.training.models import ACTIVE_RUN_STATUSES, RunStatus, TrainingRun
from tenants.context import tenant_context

log = logging.getLogger(__name__)


class StageTimer:
    def __init__(self, run: TrainingRun):
        self.run = run

    def enter(self, status: str) -> Callable[[], None]:
        beat(self.run, status=status)  # RunStopped when cancelled or reaped meanwhile
        started = time.perf_counter()

        def done() -> None:
            self.run.timings[status] = round(time.perf_counter() - started, 3)
            self.run.save(update_fields=["timings"])

        return done


def execute_run(run: TrainingRun) -> ModelVersion:
    """Run every stage of `run` (already fetched inside its tenant's context)."""
    existing = ModelVersion.objects.filter(training_run=run).first()
    if existing is not None:  # a retry after publication committed: nothing left to do
        if run.is_active:
            _finish(run, RunStatus.SUCCEEDED)
        return existing
    beat(run, started_at=run.started_at or timezone.now(), attempts=run.attempts + 1,
         error="")
    config = run.plan_revision.config
    timer = StageTimer(run)

    done = timer.enter(RunStatus.BUILDING_DATASET)
    dataset, events, prepared = build_dataset_version(run.tenant, run.plan_revision, run.cutoff)
    run.dataset_version = dataset
    run.save(update_fields=["dataset_version"])
    catalogue = _catalogue(run, prepared.item_ids)
    done()

    minimums = config["minimums"]
    big_enough = (dataset.n_users >= minimums["users"] and dataset.n_items >= minimums["items"]
                  and dataset.n_interactions >= minimums["interactions"])
    if not big_enough:
        return _publish_fallback(run, timer, prepared, catalogue, events)

    training = dict(config["training"])
    strategy = training.pop("strategy")

    done = timer.enter(RunStatus.TRAINING)
    model = mfengine.create(strategy, **training)
    model.fit(prepared.matrix, callback=_progress(run, training.get("iterations")))
    train, test = _split(run, events, prepared)
    eval_model = mfengine.create(strategy, **training).fit(train)
    done()

    done = timer.enter(RunStatus.EVALUATING)
    report = _evaluate(run, eval_model, train, test, prepared, catalogue)
    checks = check_model(model, prepared.matrix)
    done()

    done = timer.enter(RunStatus.PUBLISHING)
    version = _publish_mf(run, model, strategy, training, prepared, catalogue, report, checks)
    done()
    _finish(run, RunStatus.SUCCEEDED)
    decide_promotion(version)
    apply_retention(run.plan, settings.MODEL_RETENTION_KEEP)
    return version


def _progress(run: TrainingRun, iterations: int | None):
    last = [0.0]

    def callback(iteration: int, loss: float) -> None:
        now = time.monotonic()
        final = iterations is not None and iteration + 1 >= iterations
        if final or now - last[0] > 0.5:  # throttled: a write per iteration is wasteful
            last[0] = now
            run.progress = {"iteration": iteration + 1, "iterations": iterations,
                            "loss": None if loss is None or not np.isfinite(loss) else
                            float(loss)}
            beat(run, progress=run.progress)  # a cancelled run stops here

    return callback


def _catalogue(run: TrainingRun, item_ids: np.ndarray) -> dict:
    """Category, tags and attributes of the dataset's items, in column order."""
    rows = {row["id"]: row for row in Item.objects.filter(tenant=run.tenant, pk__in=list(
        map(int, item_ids))).values("id", "category", "tags", "attributes")}
    ordered = [rows.get(int(i), {"category": "", "tags": [], "attributes": {}})
               for i in item_ids]
    return {
        "categories": [r["category"] for r in ordered],
        "tags": [r["tags"] or [] for r in ordered],
        "attributes": [r["attributes"] or {} for r in ordered],
    }


def _split_masks(config: dict, events: EventArrays, cutoff: int) -> np.ndarray:
    """True for events held out for testing."""
    split = config["split"]
    if split["kind"] == "global":
        return events.timestamps >= cutoff - int(split["test_days"] * 86400)
    return temporal_split_mask(events.user_ids, events.timestamps, split["test_fraction"],
                               events.item_ids)


def _split(run: TrainingRun, events: EventArrays, prepared) -> tuple[sp.csr_matrix,
                                                                     sp.csr_matrix]:
    """(train, test) in the dataset's id space: train prepared exactly like the full data from
    the non-test events; test = binary held-out positives not seen in train, for at most
    `evaluation.max_users` users (a seeded sample keeps evaluation cost bounded)."""
    config = run.plan_revision.config
    cutoff = int(run.cutoff.timestamp())
    positive = np.isin(events.type_names.astype(str),
                       list(set(config["events"]) - events.negative_types))
    is_test = _split_masks(config, events, cutoff)
    # The evaluation model sees only the training part, prepared exactly like the full data.
    train_part = prepare(events.take(~is_test), config, run.cutoff,
                         catalogue_item_ids=prepared.item_ids)
    rows = prepared.user_rows(train_part.user_ids)
    coo = train_part.matrix.tocoo()
    train = sp.csr_matrix((coo.data, (rows[coo.row], coo.col)), shape=prepared.shape,
                          dtype=np.float32)
    test_events = is_test & positive
    threshold = config["split"]["positive_threshold"]
    if threshold is not None:
        test_events &= np.nan_to_num(events.values, nan=threshold) >= threshold
    test_rows = prepared.user_rows(events.user_ids[test_events])
    test_cols = prepared.item_columns(events.item_ids[test_events])
    known = (test_rows >= 0) & (test_cols >= 0)
    test = sp.csr_matrix((np.ones(int(known.sum()), np.float32),
                          (test_rows[known], test_cols[known])), shape=prepared.shape)
    test.sum_duplicates()
    test.data[:] = 1.0
    test = test - test.multiply(train > 0)  # what was seen in training is not a test positive
    test.eliminate_zeros()
    test_users = np.flatnonzero(np.diff(test.indptr) > 0)
    limit = config["evaluation"]["max_users"]
    if limit and len(test_users) > limit:
        keep = np.zeros(test.shape[0], dtype=bool)
        keep[np.random.default_rng(0).choice(test_users, limit, replace=False)] = True
        test = sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ test)
        test.eliminate_zeros()
    return train.tocsr(), test.tocsr()


def _evaluate(run, eval_model, train, test, prepared, catalogue) -> dict:
    config = run.plan_revision.config
    tokens = item_tokens(prepared.shape[1], **catalogue)
    baselines = {"popularity": PopularityRecommender().fit(train)}
    if any(tokens):
        baselines["content"] = ContentRecommender().fit(train, tokens)
    previous = ModelVersion.objects.filter(plan=run.plan, status=ModelStatus.ACTIVE).first()
    active = _on_this_split(previous, prepared) if previous is not None else None
    if active is not None:
        baselines["active"] = active
    report = build_report(
        eval_model, train, test, config["evaluation"]["k"], baselines=baselines,
        previous_report=previous.report if previous is not None and previous.report else None,
        dataset={"dataset_version": run.dataset_version_id,
                 "content_hash": prepared.content_hash, **prepared.counts},
        split=dict(config["split"]))
    # Which version the "active" baseline is: the gate uses it only if that one is still
    # active when the candidate is judged.
    report["active_baseline"] = None if active is None else {
        "model_version": previous.pk, "version": previous.version}
    return report


def _on_this_split(version: ModelVersion, prepared) -> RemappedModel | None:
    """The active version's model answering this run's test: the candidate is compared with
    it on the same split, not with the numbers of its own, older split."""
    if version.kind != ModelKind.MF:
        return None
    try:
        model = mfengine.load(artifact_path(version, "model.npz"))
        with np.load(artifact_path(version, "ids.npz"), allow_pickle=False) as ids:
            item_ids = ids["item_ids"]
        model.fold_in(np.zeros(1, np.int64), np.ones(1, np.float32))
    except (OSError, ValueError, KeyError, IndexError, NotImplementedError) as exc:
        # Files gone, or a plugin strategy without fold-in: only its own report remains.
        log.warning("active v%s not re-evaluated: %s", version.version, exc)
        return None
    return RemappedModel.from_ids(model, item_ids, prepared.item_ids)


def _next_version(run: TrainingRun) -> int:
    last = ModelVersion.objects.filter(plan=run.plan).order_by("-version").first()
    return 1 if last is None else last.version + 1


def new_artifact_dir(run: TrainingRun) -> str:
    """A folder of its own for a model version's files (model, fallbacks, id maps), in the
    default storage. Unique, so that databases sharing a media folder (a test run beside the
    development server, a benchmark) never overwrite each other's files."""
    name = f"models/{run.tenant_id}/{run.plan_id}/{uuid.uuid4().hex}"
    Path(default_storage.path(name)).mkdir(parents=True, exist_ok=True)
    return name


def artifact_path(version: ModelVersion, filename: str) -> Path:
    return Path(default_storage.path(version.artifact)) / filename


def _publish_mf(run, model, strategy, training, prepared, catalogue, report, checks
                ) -> ModelVersion:
    folder = new_artifact_dir(run)
    model.save(Path(default_storage.path(folder)) / "model.npz")
    item_vectors = model.item_vectors()
    user_vectors = model.user_vectors()
    passed = all_passed(checks)
    with transaction.atomic():
        lock_active_run(run)
        version = ModelVersion.objects.create(
            tenant=run.tenant, plan=run.plan, plan_revision=run.plan_revision,
            dataset_version=run.dataset_version, training_run=run,
            version=_next_version(run), kind=ModelKind.MF, strategy=strategy,
            hyperparameters=training, dimensions=int(item_vectors.shape[1]),
            status=ModelStatus.CANDIDATE if passed else ModelStatus.REJECTED,
            artifact=folder, report=report, checks=checks,
            decision={} if passed else {"verdict": "rejected", "reasons": [
                f"quality check {c['name']} failed: {c['reason']}" for c in checks
                if not c["passed"]]})
        version.n_item_vectors = write_vectors(version, "item", prepared.item_ids, item_vectors)
        version.n_user_vectors = write_vectors(version, "user", prepared.user_ids, user_vectors)
        create_item_index(version)
        version.save(update_fields=["n_item_vectors", "n_user_vectors"])
    _save_fallbacks(version, prepared, catalogue)
    return version


def _save_fallbacks(version: ModelVersion, prepared, catalogue) -> None:
    """Popularity and content models next to every version, for serving's fallback chain."""
    popularity = PopularityRecommender().fit(prepared.matrix,
                                             item_categories=catalogue["categories"])
    popularity.save(artifact_path(version, "popularity.npz"))
    tokens = item_tokens(prepared.shape[1], **catalogue)
    if any(tokens):
        ContentRecommender().fit(prepared.matrix, tokens).save(
            artifact_path(version, "content.npz"))
    np.savez(artifact_path(version, "ids.npz"), item_ids=prepared.item_ids.astype(np.int64),
             user_ids=prepared.user_ids.astype(np.int64))


def _publish_fallback(run, timer, prepared, catalogue, events) -> ModelVersion:
    """Too little data for MF: popularity + content-based from day one, marked as such."""
    done = timer.enter(RunStatus.PUBLISHING)
    config = run.plan_revision.config
    minimums = config["minimums"]
    with transaction.atomic():
        lock_active_run(run)
        version = ModelVersion.objects.create(
            tenant=run.tenant, plan=run.plan, plan_revision=run.plan_revision,
            dataset_version=run.dataset_version, training_run=run,
            version=_next_version(run), kind=ModelKind.FALLBACK,
            strategy="content_based+popularity", hyperparameters={}, dimensions=0,
            artifact=new_artifact_dir(run),
            status=ModelStatus.CANDIDATE,
            report={"fallback": True, "dataset": prepared.counts, "minimums": minimums,
                    "reason": (f"dataset below the plan's minimums for MF: "
                               f"{prepared.shape[0]} users, {prepared.shape[1]} items, "
                               f"{prepared.matrix.nnz} interactions; minimums {minimums}")})
    _save_fallbacks(version, prepared, catalogue)
    done()
    _finish(run, RunStatus.SUCCEEDED)
    decide_promotion(version)
    return version


def _finish(run: TrainingRun, status: str, error: str = "") -> None:
    """Only an active run ends here: one cancelled or reaped meanwhile raises RunStopped
    (its version, if any, was withdrawn by whoever stopped it)."""
    finished_at = timezone.now()
    if not TrainingRun.objects.filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(
            status=status, error=error, finished_at=finished_at):
        raise RunStopped(run.pk)
    run.status, run.error, run.finished_at = status, error, finished_at


def fail_run(run_id: int, tenant_id: int, error: str) -> None:
    with tenant_context(tenant_id):
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is not None and run.is_active:
            _finish(run, RunStatus.FAILED, error[:5000])
        # Vectors of a version that never committed are rolled back with its transaction;
        # a version that failed after committing is marked failed and its vectors dropped.
        version = ModelVersion.objects.filter(training_run_id=run_id).first()
        if version is not None and version.status == ModelStatus.CANDIDATE and run is not None \
                and run.status == RunStatus.FAILED:
            drop_vectors(version)
            version.status = ModelStatus.FAILED
            version.vectors_dropped_at = timezone.now()
            version.save(update_fields=["status", "vectors_dropped_at"])
