"""The training pipeline in-process (the worker path has its own end-to-end test)."""

import numpy as np
import pytest
from django.db import connection

from mfplatform.registry.models import ItemVector, ModelKind, ModelStatus, UserVector
from mfplatform.registry.runs import execute_run
from mfplatform.registry.vectors import nearest_items
from mfplatform.training.models import RunStatus
from mfplatform.training.pipeline import REFIT_ITERATIONS
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db


def train(tenant_fixture, config=TEST_PLAN, data=None, name="default"):
    with tenant_fixture.scope():
        load_synthetic(tenant_fixture.tenant, data if data is not None else synthetic())
        plan = make_plan(tenant_fixture.tenant, name, **config)
        run = queue_run(tenant_fixture.tenant, plan)
        version = execute_run(run)
        run.refresh_from_db()
    return plan, run, version


def test_run_publishes_an_evaluated_model_version_with_vectors(tenant_a):
    plan, run, version = train(tenant_a)
    assert run.status == RunStatus.SUCCEEDED
    assert set(run.timings) == {"building_dataset", "training", "evaluating", "publishing"}
    # Progress counts both fits: the split's train part (the plan's 8 iterations), then the
    # whole data warm-started from it.
    assert run.progress["iteration"] == run.progress["iterations"] == 8 + REFIT_ITERATIONS
    assert version.report["engine"]["full_fit"] == {"warm_start": True,
                                                    "iterations": REFIT_ITERATIONS}
    assert version.kind == ModelKind.MF and version.dimensions == 16
    report = version.report
    assert report["metrics"]["overall"]["10"]["ndcg"] > 0
    assert "popularity" in report["baselines"]
    # Planted taste clusters: MF clearly beats popularity, so auto-promotion makes it active.
    assert version.decision["verdict"] == "pass", version.decision
    assert version.status == ModelStatus.ACTIVE
    with tenant_a.scope():
        assert ItemVector.objects.filter(model_version=version).count() == 120
        assert UserVector.objects.filter(model_version=version).count() == 300
        # The per-version HNSW index exists and answers an inner-product query.
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                           [version.index_name])
            assert "hnsw" in cursor.fetchone()[0]
        hits = nearest_items(version, np.ones(16, np.float32), 5)
    assert len(hits) == 5 and hits[0][1] >= hits[-1][1]


def test_small_dataset_gets_a_fallback_model(tenant_a):
    config = {**TEST_PLAN, "minimums": {"users": 10_000, "items": 10, "interactions": 10}}
    _plan, run, version = train(tenant_a, config,
                                synthetic(n_users=40, n_items=30, n_interactions=400))
    assert run.status == RunStatus.SUCCEEDED
    assert version.kind == ModelKind.FALLBACK
    assert "below the plan's minimums" in version.report["reason"]
    assert version.status == ModelStatus.ACTIVE  # every tenant is served from day one


def test_dataset_hash_is_stable_for_same_cutoff(tenant_a):
    from mfplatform.training.dataset import build_dataset_version

    plan, run, version = train(tenant_a)
    with tenant_a.scope():
        again, _events, prepared = build_dataset_version(
            tenant_a.tenant, run.plan_revision, run.cutoff)
    assert again.pk == run.dataset_version_id
    assert prepared.content_hash == again.content_hash


def _second_run(tenant_fixture, plan):
    with tenant_fixture.scope():
        return execute_run(queue_run(tenant_fixture.tenant, plan))


def test_the_active_model_is_measured_again_on_the_candidates_split(tenant_a):
    plan, _run, first = train(tenant_a)
    assert first.status == ModelStatus.ACTIVE
    second = _second_run(tenant_a, plan)
    report = second.report
    assert report["active_baseline"] == {"model_version": first.pk, "version": first.version}
    again = report["baselines"]["active"]["overall"]["10"]["ndcg"]
    assert again > report["baselines"]["popularity"]["overall"]["10"]["ndcg"]
    assert second.decision["values"]["active"] == pytest.approx(again)
    assert second.decision["active_measured"] == "on the candidate's split"


def test_without_its_files_the_active_model_is_judged_by_its_own_report(tenant_a):
    from tests import artifact_files

    plan, _run, first = train(tenant_a)
    artifact_files.delete_file(first, "model_items.npz")
    second = _second_run(tenant_a, plan)
    assert second.report["active_baseline"] is None
    assert "active" not in second.report["baselines"]
    assert second.decision["values"]["active"] == pytest.approx(
        first.report["metrics"]["overall"]["10"]["ndcg"])
    assert second.decision["active_measured"] == "on its own earlier split"
