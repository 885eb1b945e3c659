"""Which engine trains a run: mfengine inside the worker, or Spark MLlib ALS (strategy
`spark_als`, the `spark` extra) for a plan that names it or, with SPARK_MIN_INTERACTIONS set,
for an `als` plan whose dataset is larger than that. The choice and its reason go into the
run's report (`engine`); everything after the fit (vectors, evaluation, gates, serving) is the
same whichever engine trained."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

import mfengine
from mfengine.als import weighted_lambda
from mfengine.data import PreparedData
from mfplatform.training.models import DatasetVersion

log = logging.getLogger(__name__)

SPARK_STRATEGY = "spark_als"


@dataclass
class EngineChoice:
    strategy: str
    hyperparameters: dict
    record: dict = field(default_factory=dict)  # the report's `engine` section

    @property
    def spark(self) -> bool:
        return self.strategy == SPARK_STRATEGY


def choose_engine(strategy: str, hyperparameters: dict, dataset: DatasetVersion,
                  tuning: bool) -> EngineChoice:
    """The strategy and hyperparameters this run trains with (`strategy` and
    `hyperparameters` are the plan's)."""
    record = {"strategy": strategy, "requested": strategy}
    threshold = settings.SPARK_MIN_INTERACTIONS
    if strategy != "als" or threshold is None or dataset.n_interactions <= threshold:
        return _finish(EngineChoice(strategy, dict(hyperparameters), record))
    size = (f"the dataset has {dataset.n_interactions} interactions, more than "
            f"SPARK_MIN_INTERACTIONS={threshold}")
    if tuning:  # the search space and its absolute regularization are mfengine ALS's
        record["reason"] = f"{size}, but the plan tunes, which runs on mfengine ALS"
    elif SPARK_STRATEGY not in mfengine.available():
        record["reason"] = f"{size}, but spark_als is not installed (pip install '.[spark]')"
        log.warning("dataset %s: %s", dataset.pk, record["reason"])
    else:
        record.update(strategy=SPARK_STRATEGY, reason=size)
        return _finish(EngineChoice(SPARK_STRATEGY, _spark_hyperparameters(
            hyperparameters, record), record))
    return _finish(EngineChoice(strategy, dict(hyperparameters), record))


def _spark_hyperparameters(als: dict, record: dict) -> dict:
    """An `als` plan's values for Spark, meaning the same model: the penalty rule as mfengine's
    ALS reads it, with its scaling always passed (a number without one is a fixed lambda for
    ALS and regParam for Spark), which spark_als turns into the regParam of the same strength
    (mfengine.als.weighted_lambda), and ALS's alpha where the plan sets none (the confidence
    1 + alpha * strength is the same on both engines)."""
    params = dict(als)
    als_model = mfengine.create("als", **{key: params[key] for key in (
        "regularization", "regularization_scaling", "alpha") if key in params})
    rule = als_model.regularization_rule()
    params.update(regularization=rule[1], regularization_scaling=rule[0], alpha=als_model.alpha)
    record["regularization"] = {
        "plan": als.get("regularization", "auto"), "scaling": rule[0],
        # A fixed lambda is compared with what "auto" gives on the data, at fit time; the
        # fitted model keeps the regParam it used (regularization_).
        "spark_regparam": None if rule[0] == "none" else weighted_lambda(
            rule, None, als_model.alpha)}
    return params


def _finish(choice: EngineChoice) -> EngineChoice:
    if choice.spark:
        import mfengine_spark  # the plugin is installed: the strategy was found

        mfengine_spark.configure(settings.SPARK_MASTER_URL)
        choice.record["master_url"] = settings.SPARK_MASTER_URL
    return choice


def save_spark_input(dataset: DatasetVersion, prepared: PreparedData) -> str:
    """The dataset version's matrix as Parquet (user, item, value by matrix position) next to
    its .npz in the default storage, where another machine can read it; returns its name. A
    retried run finds it there."""
    import mfengine_spark

    name = f"{dataset.artifact.removesuffix('.npz')}.parquet"
    if default_storage.exists(name):
        return name
    with tempfile.TemporaryDirectory(prefix="spark-input-") as folder:
        path = mfengine_spark.write_interactions(prepared.matrix, Path(folder))
        with open(path, "rb") as handle:
            return default_storage.save(name, File(handle))
