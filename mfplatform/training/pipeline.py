"""A training run's own stages: dataset -> fit -> evaluation.

    queued -> building_dataset -> training -> evaluating -> publishing -> succeeded | failed

The training stage fits the plan's configuration on the split's training part first: that
model is the one the evaluation stage measures on the held-out part (the test events are never
seen by the model being measured). The served model is then fitted on the whole dataset
version, warm-started from the evaluation model's factors with REFIT_ITERATIONS iterations
(strategies that cannot warm start fit it cold with the plan's iterations). Everything runs
inside the tenant's context, so row-level security guarantees the run reads only its tenant's
rows. Publication (model version rows, vectors, the promotion gate) belongs to the registry,
the layer above: `mfplatform.registry.runs` drives a whole run, these stages and then the
publication.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.db import DatabaseError
from django.utils import timezone

import mfengine
from mfengine.baselines import ContentRecommender, PopularityRecommender, item_tokens
from mfengine.checks import check_model
from mfengine.cold import ContentToFactors, SegmentVectors
from mfengine.data import PreparedData
from mfengine.report import build_report
from mfplatform.catalog.models import EndUser, Item
from mfplatform.training.dataset import EventArrays, build_dataset_version
from mfplatform.training.engines import choose_engine, spark_inputs
from mfplatform.training.liveness import RunStopped, beat
from mfplatform.training.models import ACTIVE_RUN_STATUSES, RunStatus, TrainingRun
from mfplatform.training.signals import run_failed
from mfplatform.training.splits import split_events
from mfplatform.training.tuning import tune_training
from tenants.context import tenant_context

log = logging.getLogger(__name__)

# Iterations of the full-data fit warm-started from the evaluation model (which had the
# plan's iterations on the split's train part, most of the same data): on the 7 shapes of
# benchmarks/warm_start.py, 1, 2 and 3 all came within the cold 15-iteration fit's
# seed-to-seed spread (worst -0.9% NDCG@10; RESULTS.md, "warm_start"). 2, not 1: users who
# appear only after the split start from random factors and get two solves.
REFIT_ITERATIONS = 2


class StageTimer:
    """Each stage sets the run's status on entry and records its duration on exit, whether
    the stage finished or raised."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.started: dict[str, float] = {}

    @contextmanager
    def stage(self, status: str) -> Iterator[None]:
        beat(self.run, status=status)  # RunStopped when cancelled or reaped meanwhile
        started = self.started[status] = time.perf_counter()
        try:
            yield
        except BaseException:
            self._record(status, started, failing=True)
            raise
        self._record(status, started)

    def record_so_far(self, status: str) -> None:
        """The running stage's duration until now, saved in the caller's transaction: the
        last stage's timing commits with the run's success, so nobody reads a succeeded run
        without it (the stage's end records it again, its commit included)."""
        self._record(status, self.started[status])

    def _record(self, status: str, started: float, failing: bool = False) -> None:
        self.run.timings[status] = round(time.perf_counter() - started, 3)
        try:
            self.run.save(update_fields=["timings"])
        except DatabaseError:
            if not failing:
                raise
            # The stage's own error is the one to report (the database may be what failed).
            log.warning("run %s: timing of the failed stage %s not saved", self.run.pk, status)


@dataclass
class ActiveModel:
    """The plan's active model version, as this run's evaluation compares with it."""

    model_version: int  # primary key
    version: int
    report: dict | None
    model: Any | None  # answers this run's test in its item ids; None when it cannot


@dataclass
class TrainedRun:
    """What a run hands to publication: the data, the fitted model and its evaluation.
    `model` is None when the dataset is below the plan's minimums (a fallback model then)."""

    prepared: PreparedData
    catalogue: dict
    model: mfengine.MatrixFactorization | None = None
    strategy: str = ""
    hyperparameters: dict | None = None
    report: dict | None = None
    checks: list | None = None
    # Cold start: where new items go in the model's item space (by their content) and where
    # users without events go (their segment's mean vector).
    cold_items: ContentToFactors | None = None
    segments: SegmentVectors | None = None


def start_run(run: TrainingRun) -> None:
    beat(run, started_at=run.started_at or timezone.now(), attempts=run.attempts + 1,
         error="")


def train_and_evaluate(run: TrainingRun, timer: StageTimer,
                       active_model: Callable[[PreparedData], ActiveModel | None]
                       ) -> TrainedRun:
    """The dataset, training and evaluation stages of `run` (already fetched inside its
    tenant's context). `active_model` gives the plan's active model on this run's items."""
    config = run.plan_revision.config

    with timer.stage(RunStatus.BUILDING_DATASET):
        dataset, events, prepared = build_dataset_version(run.tenant, run.plan_revision,
                                                          run.cutoff)
        run.dataset_version = dataset
        run.save(update_fields=["dataset_version"])
        catalogue = _catalogue(run, prepared.item_ids)

    minimums = config["minimums"]
    big_enough = (dataset.n_users >= minimums["users"] and dataset.n_items >= minimums["items"]
                  and dataset.n_interactions >= minimums["interactions"])
    if not big_enough:
        return TrainedRun(prepared, catalogue)

    training = dict(config["training"])
    strategy = training.pop("strategy")
    tune = training.pop("tune", None)
    engine = choose_engine(strategy, training, dataset, tuning=bool(tune))
    strategy, training = engine.strategy, engine.hyperparameters

    with timer.stage(RunStatus.TRAINING):
        tuning = None
        if tune:
            tuning = tune_training(config, strategy, training, tune, events, prepared,
                                   run.cutoff, progress=_tuning_progress(run, tune))
            training = dict(tuning["hyperparameters"])
        train, test = _split(run, events, prepared)
        del events  # the split was its last use: a few hundred MB at 10M events
        with spark_inputs(engine, dataset, prepared.matrix, train, run.pk) as inputs:
            eval_model, model = _fit(run, strategy, training, train, prepared.matrix,
                                     engine.record, inputs)

    with timer.stage(RunStatus.EVALUATING):
        report = _evaluate(run, eval_model, train, test, prepared, catalogue,
                           active_model(prepared))
        if tuning is not None:
            report["tuning"] = tuning
        report["engine"] = engine.record
        checks = check_model(model, prepared.matrix)
        cold_items, segments = _cold_start(run, model, prepared, catalogue)

    return TrainedRun(prepared, catalogue, model, strategy, training, report, checks,
                      cold_items, segments)


def _fit(run: TrainingRun, strategy: str, training: dict, train: sp.csr_matrix,
         full: sp.csr_matrix, record: dict, inputs: dict[str, str | None]
         ) -> tuple[mfengine.MatrixFactorization, mfengine.MatrixFactorization]:
    """(the evaluation model fitted on `train`, the served model fitted on `full`), the second
    warm-started from the first when the strategy can (said in `record`, the report's engine
    section); progress counts both fits. `inputs` names where Spark reads each fit's matrix
    ("evaluation", "full"; engines.spark_inputs)."""
    eval_model = mfengine.create(strategy, **training)
    _read_input_from(eval_model, inputs.get("evaluation"))
    first = int(training.get("iterations", getattr(eval_model, "iterations", 0)) or 0)
    warm = eval_model.supports_warm_start
    second = min(first, REFIT_ITERATIONS) if warm else first
    report = _progress(run, first + second)
    eval_model.fit(train, callback=report)
    model = mfengine.create(strategy, **{**training, "iterations": second} if warm else training)
    _read_input_from(model, inputs.get("full"))
    start = {"initial_item_factors": eval_model.item_factors_,
             "initial_user_factors": eval_model.user_factors_} if warm else {}
    model.fit(full, callback=lambda iteration, loss: report(first + iteration, loss), **start)
    record["full_fit"] = {"warm_start": warm, "iterations": second}
    return eval_model, model


def _read_input_from(model: mfengine.MatrixFactorization, uri: str | None) -> None:
    """Point a Spark model at the Parquet of the matrix it is about to fit (SparkALS.input_uri)."""
    if uri is not None:
        model.input_uri = uri


def _cold_start(run: TrainingRun, model: mfengine.MatrixFactorization, prepared: PreparedData,
                catalogue: dict) -> tuple[ContentToFactors, SegmentVectors]:
    """The content-to-vector mapping of the items the model learned (their exported vectors,
    bias included, as written to pgvector) and the mean user factors per `segment` attribute
    of the users it learned."""
    tokens = item_tokens(prepared.shape[1], **catalogue)
    cold_items = ContentToFactors().fit(tokens, model.item_vectors())
    # Only the users that have a segment, looked up by row in numpy: naming every user of the
    # dataset in the query (750k ids at 10M events) took most of the evaluation stage.
    pks, values = [], []
    for pk, segment in (EndUser.objects.filter(tenant=run.tenant)
                        .exclude(attributes__segment=None)
                        .values_list("id", "attributes__segment").iterator(chunk_size=10_000)):
        pks.append(pk)
        values.append(str(segment))
    rows = prepared.user_rows(np.array(pks, dtype=np.int64))
    known = rows >= 0
    segments = SegmentVectors().fit(np.array(values, dtype=str)[known],
                                    model.user_factors_[rows[known]])
    return cold_items, segments


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


def _tuning_progress(run: TrainingRun, tune: dict):
    def callback(trial: dict) -> None:
        run.progress = {"tuning_trial": trial["trial"] + 1, "tuning_trials": tune["trials"],
                        "tuning_rung": trial.get("rung"), "metric": tune["metric"],
                        "score": trial["score"] if np.isfinite(trial["score"]) else None}
        beat(run, progress=run.progress)  # a cancelled run stops here

    return callback


def _split(run: TrainingRun, events: EventArrays, prepared: PreparedData
           ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The evaluation's (train, test) for this run (`splits.split_events` at its cutoff)."""
    return split_events(run.plan_revision.config, events, prepared, run.cutoff)


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


def _evaluate(run, eval_model, train, test, prepared, catalogue,
              previous: ActiveModel | None) -> dict:
    config = run.plan_revision.config
    tokens = item_tokens(prepared.shape[1], **catalogue)
    baselines = {"popularity": PopularityRecommender().fit(train)}
    if any(tokens):
        baselines["content"] = ContentRecommender().fit(train, tokens)
    active = previous.model if previous is not None else None
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
        "model_version": previous.model_version, "version": previous.version}
    return report


def finish_run(run: TrainingRun, status: str, error: str = "") -> None:
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
            try:
                finish_run(run, RunStatus.FAILED, error[:5000])
            except RunStopped:  # cancelled or reaped meanwhile: that ending stands
                run.refresh_from_db()
        if run is not None and run.status == RunStatus.FAILED:
            run_failed.send(sender=TrainingRun, run_id=run_id)
