"""A run executed twice (a redelivered task) or failing midway never leaves two versions or
half-written vectors."""

import pytest

from mfplatform.registry import vectors
from mfplatform.registry.models import ItemVector, ModelVersion, UserVector
from mfplatform.registry.runs import execute_run
from mfplatform.training.models import RunStatus, TrainingRun
from mfplatform.training.pipeline import fail_run
from mfplatform.training.services import queue_run
from mfplatform.training.tasks import scheduled_run
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(tenant_a):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic())
        plan = make_plan(tenant_a.tenant, "p", **TEST_PLAN)
        run = queue_run(tenant_a.tenant, plan)
    return run


def test_running_twice_keeps_one_version(tenant_a, queued):
    with tenant_a.scope():
        first = execute_run(queued)
        again = execute_run(TrainingRun.objects.get(pk=queued.pk))
        assert again.pk == first.pk
        assert ModelVersion.objects.count() == 1
        assert ItemVector.objects.count() == first.n_item_vectors


def test_failure_while_publishing_leaves_nothing_half_written(tenant_a, queued, monkeypatch):
    real_write = vectors.write_vectors

    def fail_on_users(version, kind, ids, vecs):
        if kind == "user":
            raise ConnectionError("simulated loss of the database mid-publication")
        return real_write(version, kind, ids, vecs)

    monkeypatch.setattr("mfplatform.registry.publication.write_vectors", fail_on_users)
    with tenant_a.scope():
        with pytest.raises(ConnectionError):
            execute_run(queued)
        fail_run(queued.pk, tenant_a.tenant.pk, "ConnectionError: simulated")
        assert ModelVersion.objects.count() == 0
        assert ItemVector.objects.count() == 0 and UserVector.objects.count() == 0
        run = TrainingRun.objects.get(pk=queued.pk)
        assert run.status == RunStatus.FAILED and "simulated" in run.error
    monkeypatch.setattr("mfplatform.registry.publication.write_vectors", real_write)
    with tenant_a.scope():
        # A new run of the same plan is allowed again and publishes completely.
        retry = queue_run(tenant_a.tenant, run.plan)
        version = execute_run(retry)
        assert UserVector.objects.filter(model_version=version).count() == 300


def test_scheduled_run_queues_once(tenant_a, queued):
    scheduled_run(tenant_a.tenant.pk, queued.plan_id)  # busy: skipped, not a second run
    with tenant_a.scope():
        assert TrainingRun.objects.filter(plan_id=queued.plan_id).count() == 1
        execute_run(queued)
    scheduled_run(tenant_a.tenant.pk, queued.plan_id)
    with tenant_a.scope():
        runs = TrainingRun.objects.filter(plan_id=queued.plan_id).order_by("queued_at")
        assert [r.trigger for r in runs] == ["api", "schedule"]


def test_a_failing_stage_records_its_time(tenant_a, queued, monkeypatch):
    def fail(*args, **kwargs):
        raise ConnectionError("simulated loss of the database mid-publication")

    monkeypatch.setattr("mfplatform.registry.publication.write_vectors", fail)
    with tenant_a.scope():
        with pytest.raises(ConnectionError):
            execute_run(queued)
        run = TrainingRun.objects.get(pk=queued.pk)
    assert run.status == RunStatus.PUBLISHING
    assert set(run.timings) == {"building_dataset", "training", "evaluating", "publishing"}
    assert run.timings["publishing"] >= 0


def test_the_gate_decides_before_the_run_is_marked_succeeded(tenant_a, queued, monkeypatch):
    from mfplatform.registry import services

    real_gate = services.gate
    seen = []

    def watched_gate(version, active):
        # What anyone reading the run's row at the gate's moment finds.
        seen.append(TrainingRun.objects.get(pk=queued.pk).status)
        return real_gate(version, active)

    monkeypatch.setattr(services, "gate", watched_gate)
    with tenant_a.scope():
        version = execute_run(queued)
        run = TrainingRun.objects.get(pk=queued.pk)
    assert seen == [RunStatus.PUBLISHING]
    assert run.status == RunStatus.SUCCEEDED
    assert version.decision["verdict"] in ("pass", "fail")


def test_a_failing_gate_leaves_no_version_and_fails_the_run(tenant_a, queued, monkeypatch):
    from mfplatform.registry import services

    def broken_gate(version, active):
        raise ValueError("simulated gate failure")

    monkeypatch.setattr(services, "gate", broken_gate)
    with tenant_a.scope():
        with pytest.raises(ValueError):
            execute_run(queued)
        # the version's publication and the decision are one commit: no undecided version
        assert ModelVersion.objects.count() == 0 and ItemVector.objects.count() == 0
        assert TrainingRun.objects.get(pk=queued.pk).status == RunStatus.PUBLISHING
        fail_run(queued.pk, tenant_a.tenant.pk, "ValueError: simulated gate failure")
        assert TrainingRun.objects.get(pk=queued.pk).status == RunStatus.FAILED


def test_a_retry_decides_a_version_published_without_a_decision(tenant_a, queued):
    with tenant_a.scope():
        version = execute_run(queued)
        # as a version published before its gate ran (older code) is left: undecided,
        # its run still publishing
        ModelVersion.objects.filter(pk=version.pk).update(decision={}, status="candidate")
        TrainingRun.objects.filter(pk=queued.pk).update(status=RunStatus.PUBLISHING)
        again = execute_run(TrainingRun.objects.get(pk=queued.pk))
        again.refresh_from_db()
        assert again.pk == version.pk and again.decision["verdict"] in ("pass", "fail")
        assert TrainingRun.objects.get(pk=queued.pk).status == RunStatus.SUCCEEDED
