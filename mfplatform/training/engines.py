"""Which engine trains a run: mfengine inside the worker, or Spark MLlib ALS (strategy
`spark_als`, the `spark` extra) for a plan that names it or, with SPARK_MIN_INTERACTIONS set,
for an `als` plan whose dataset is larger than that. The choice and its reason go into the
run's report (`engine`); everything after the fit (vectors, evaluation, gates, serving) is the
same whichever engine trained."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import scipy.sparse as sp
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage

import mfengine
from mfengine.als import weighted_lambda
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


@contextmanager
def spark_inputs(engine: EngineChoice, dataset: DatasetVersion, full: sp.csr_matrix,
                 train: sp.csr_matrix, run_pk: int) -> Iterator[dict[str, str | None]]:
    """The URIs Spark reads each fit's matrix from ("evaluation": the split's training part,
    "full": the dataset version's), both in the default storage; empty for another engine, and
    None where the storage has no URI Spark reads (the fit then writes its own copy,
    mfengine_spark.inputs). The training part is stored for this run only and removed after
    the block; the engine record says what Spark read."""
    if not engine.spark:
        yield {}
        return
    name = save_spark_input(dataset, full)
    uris = {"evaluation": None, "full": spark_input_uri(name)}
    engine.record.update(input=name, input_uri=uris["full"])
    if uris["full"] is None:
        engine.record["evaluation_input_uri"] = None
        yield uris
        return
    train_name = _save_parquet(train, f"{dataset.artifact.removesuffix('.npz')}"
                                      f".run-{run_pk}-train.parquet", replace=True)
    try:
        uris["evaluation"] = engine.record["evaluation_input_uri"] = spark_input_uri(train_name)
        yield uris
    finally:
        default_storage.delete(train_name)


def spark_input_uri(name: str, storage: Storage = default_storage,
                    master_url: str | None = None) -> str | None:
    """Where Spark (at `master_url`, default SPARK_MASTER_URL) reads the stored file `name`:
    SPARK_INPUT_URI_PREFIX + name when set (the storage's root as the cluster sees it), else
    the file's path on a FileSystemStorage (valid in local mode and for a cluster that mounts
    MEDIA_ROOT at the same path), s3a://bucket/key on django-storages' S3 for a cluster (which
    needs hadoop-aws, the credentials and, for an S3-compatible server,
    spark.hadoop.fs.s3a.endpoint), and None otherwise. Local mode gets no s3a:// URI: pyspark
    ships no hadoop-aws, so the fit reads a local copy instead. Paths are not
    percent-encoded: Hadoop's Path escapes a string itself."""
    prefix = settings.SPARK_INPUT_URI_PREFIX
    if prefix:
        return f"{prefix.rstrip('/')}/{name.lstrip('/')}"
    if isinstance(storage, FileSystemStorage):
        return f"file://{storage.path(name)}"
    try:
        from storages.backends.s3 import S3Storage
        from storages.utils import clean_name, safe_join
    except ImportError:  # the s3 extra is not installed: no storage of that kind either
        return None
    local = (master_url or settings.SPARK_MASTER_URL).startswith("local")
    if isinstance(storage, S3Storage) and not local:
        # The key S3Storage itself writes: the name under the storage's location
        return f"s3a://{storage.bucket_name}/{safe_join(storage.location, clean_name(name))}"
    return None


def save_spark_input(dataset: DatasetVersion, matrix: sp.csr_matrix) -> str:
    """The dataset version's matrix as Parquet (user, item, value by matrix position) next to
    its .npz in the default storage, where another machine can read it; returns its name. A
    retried run finds it there."""
    name = f"{dataset.artifact.removesuffix('.npz')}.parquet"
    if default_storage.exists(name):
        return name
    return _save_parquet(matrix, name)


def _save_parquet(matrix: sp.csr_matrix, name: str, replace: bool = False) -> str:
    """`matrix` as interactions Parquet under `name` in the default storage (the name it got:
    a storage that never overwrites may pick another); `replace` first removes a file left
    under that name (a run that died before cleaning up)."""
    import mfengine_spark

    if replace and default_storage.exists(name):
        default_storage.delete(name)
    with tempfile.TemporaryDirectory(prefix="spark-input-") as folder:
        path = mfengine_spark.write_interactions(matrix, Path(folder))
        with open(path, "rb") as handle:
            return default_storage.save(name, File(handle))
