"""Spark ALS through the real pipeline: a plan that names spark_als, and an als plan that
switches to Spark above SPARK_MIN_INTERACTIONS, train on local Spark, publish vectors and
serve; bad Spark plan values are 400s naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from django.core.files.storage import default_storage

import mfengine
from mfengine.als import AUTO_REGULARIZATION, weighted_lambda
from mfplatform.registry.artifacts import read_item_side_model
from mfplatform.registry.models import ItemVector, ModelKind, ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.training.engines import choose_engine
from mfplatform.training.models import PlanRevision, RunStatus, TrainingPlan
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db

SPARK_PLAN = {**TEST_PLAN, "training": {"strategy": "spark_als", "factors": 16,
                                        "iterations": 5}}


def _train(tenant_fixture, config):
    with tenant_fixture.scope():
        load_synthetic(tenant_fixture.tenant, synthetic())
        plan = make_plan(tenant_fixture.tenant, "main", **config)
        run = queue_run(tenant_fixture.tenant, plan)
        version = execute_run(run)
        run.refresh_from_db()
        dataset = run.dataset_version
    return run, dataset, version


def test_a_spark_plan_trains_publishes_and_serves(tenant_a, monkeypatch, tmp_path):
    # Any copy of the input a fit wrote for itself would fail the run: its folder is missing.
    monkeypatch.setenv("SPARK_SCRATCH_DIR", str(tmp_path / "no-scratch-copies"))
    run, dataset, version = _train(tenant_a, SPARK_PLAN)
    assert run.status == RunStatus.SUCCEEDED
    assert version.kind == ModelKind.MF and version.strategy == "spark_als"
    assert version.dimensions == 16
    engine = version.report["engine"]
    assert engine["strategy"] == engine["requested"] == "spark_als"
    assert engine["master_url"] == "local[2]"
    # Spark's input is kept beside the dataset version, in the storage every machine reads.
    with default_storage.open(engine["input"], "rb") as handle:
        assert pq.read_table(handle).num_rows == dataset.n_interactions
    # ... and Spark read it there: both fits from the storage, no copy on the worker.
    assert engine["input_uri"] == f"file://{default_storage.path(engine['input'])}"
    stored_split = engine["evaluation_input_uri"].removeprefix("file://")
    assert stored_split.endswith(f".run-{run.pk}-train.parquet")
    assert not Path(stored_split).exists()  # the split's copy is the run's, removed after it
    assert not (tmp_path / "no-scratch-copies").exists()
    assert version.decision["verdict"] == "pass", version.decision
    assert version.status == ModelStatus.ACTIVE
    with tenant_a.scope():
        assert ItemVector.objects.filter(model_version=version).count() == 120

    # Serving reads the published vectors: it neither knows nor asks which engine trained.
    response = tenant_a.client().get("/api/v1/recommendations?user=user-3&k=10")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model_version"]["id"] == version.pk and body["personalised"] is True
    assert len(body["items"]) == 10 and {i["source"] for i in body["items"]} == {"mf"}
    # A session the model never saw is folded in from its items (SparkALS.fold_in).
    fresh = tenant_a.client().get(
        "/api/v1/recommendations?anonymous=true&k=5&recent_items=item-1,item-2")
    assert fresh.status_code == 200, fresh.json()
    body = fresh.json()
    assert body["personalised"] is True and body["items"][0]["source"] == "mf"


def test_an_als_plan_above_the_threshold_trains_on_spark(tenant_a, settings):
    settings.SPARK_MIN_INTERACTIONS = 1000
    run, dataset, version = _train(tenant_a, TEST_PLAN)  # "als", regularization 1.0
    assert run.status == RunStatus.SUCCEEDED
    assert version.strategy == "spark_als"
    engine = version.report["engine"]
    assert engine["requested"] == "als" and engine["strategy"] == "spark_als"
    assert "SPARK_MIN_INTERACTIONS=1000" in engine["reason"]
    assert str(dataset.n_interactions) in engine["reason"]
    # The plan's fixed lambda (1.0) becomes the regParam of the same strength on this data:
    # in proportion to what "auto" gives here, applied to the count default.
    assert engine["regularization"] == {"plan": 1.0, "scaling": "none", "spark_regparam": None}
    assert version.hyperparameters["regularization_scaling"] == "none"
    assert version.hyperparameters["alpha"] == mfengine.create("als").alpha
    with default_storage.open(engine["input"], "rb") as handle:
        columns = pq.read_table(handle).to_pydict()
    matrix = sp.csr_matrix((columns["value"], (columns["user"], columns["item"])),
                           shape=(dataset.n_users, dataset.n_items), dtype=np.float32)
    with tenant_a.scope():
        fitted = read_item_side_model(version).regularization_
    assert fitted == pytest.approx(weighted_lambda(("none", 1.0), matrix, 1.0), rel=1e-5)
    assert 0 < fitted < AUTO_REGULARIZATION["count"]  # 1.0 is far below what auto gives


def _dataset(n_interactions, n_users=100):
    return SimpleNamespace(pk=1, n_interactions=n_interactions, n_users=n_users)


def test_the_switch_needs_a_threshold_an_als_plan_and_no_tuning(settings):
    settings.SPARK_MIN_INTERACTIONS = None
    assert choose_engine("als", {}, _dataset(10**9), tuning=False).strategy == "als"
    settings.SPARK_MIN_INTERACTIONS = 5000
    at = choose_engine("als", {}, _dataset(5000), tuning=False)
    assert at.strategy == "als" and "reason" not in at.record
    above = choose_engine("als", {"factors": 8}, _dataset(5001), tuning=False)
    assert above.strategy == "spark_als" and above.hyperparameters == {
        "factors": 8, "regularization": AUTO_REGULARIZATION["singular_value"],
        "regularization_scaling": "singular_value", "alpha": 1.0}
    assert above.record["regularization"]["spark_regparam"] == pytest.approx(
        AUTO_REGULARIZATION["count"])  # ALS's default is Spark's count default
    counted = choose_engine("als", {"regularization": 0.05, "regularization_scaling": "count",
                                    "alpha": 3.0}, _dataset(5001), tuning=False)
    assert counted.hyperparameters == {"regularization": 0.05,
                                       "regularization_scaling": "count", "alpha": 3.0}
    assert counted.record["regularization"]["spark_regparam"] == 0.05
    assert choose_engine("bpr", {}, _dataset(10**6), tuning=False).strategy == "bpr"
    tuned = choose_engine("als", {}, _dataset(10**6), tuning=True)
    assert tuned.strategy == "als" and "tunes" in tuned.record["reason"]


@pytest.mark.parametrize("training, needle", [
    ({"strategy": "spark_als", "learning_rate": 0.1}, "learning_rate"),
    ({"strategy": "spark_als", "tune": {"trials": 4}}, "no search space"),
    ({"strategy": "spark_als", "factors": 0}, "factors"),
    ({"strategy": "spark_als", "blocks": 4}, "unknown key"),
])
def test_bad_spark_plan_values_are_400s_naming_the_field(tenant_a, training, needle):
    response = tenant_a.client().post("/api/v1/plans", {"name": "main", "config": {
        "training": training}}, format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]["config"]["training"]
    assert needle in json.dumps(errors)
    assert not TrainingPlan.objects.exists() and not PlanRevision.objects.exists()
