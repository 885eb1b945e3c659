"""Every run ends: cancelled by an operator, stopped at its next report, or reaped when its
worker went quiet; either way the plan is free for a new run at once."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from mfplatform.registry.models import ModelVersion
from mfplatform.registry.runs import execute_run
from mfplatform.training import pipeline
from mfplatform.training.liveness import RunStopped, cancel_run, reap_stale_runs
from mfplatform.training.models import RunStatus, TrainingRun
from mfplatform.training.services import RunInProgress, queue_run
from tenants.models import Role
from tenants.services import add_member
from tests.factories import TEST_PLAN, load_synthetic, make_plan, make_run, synthetic

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(tenant_a):
    """A run its worker has started training (heartbeat now)."""
    with tenant_a.scope():
        run = make_run(make_plan(tenant_a.tenant, "p", **TEST_PLAN), status=RunStatus.TRAINING)
        TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
        run.refresh_from_db()
    return run


def test_cancel_over_rest_ends_the_run_and_frees_its_plan(tenant_a, running):
    client = tenant_a.client()
    response = client.post(f"/api/v1/runs/{running.pk}/cancel", {"reason": "wrong data"},
                           format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "cancelled" and "wrong data" in body["error"]
    assert body["finished_at"] is not None
    again = client.post(f"/api/v1/plans/{running.plan_id}/train")
    assert again.status_code == 202, again.json()
    # A finished run cannot be cancelled: a JSON 409 that says why.
    twice = client.post(f"/api/v1/runs/{running.pk}/cancel", {}, format="json")
    assert twice.status_code == 409 and twice.json()["code"] == "run_not_active"


def test_cancel_needs_the_manage_scope(tenant_a, running):
    with tenant_a.scope():
        from tenants.models import ApiKey

        _key, raw = ApiKey.issue(tenant_a.tenant, ["recommend"], name="reader")
    response = tenant_a.client(raw).post(f"/api/v1/runs/{running.pk}/cancel")
    assert response.status_code == 403
    with tenant_a.scope():
        assert TrainingRun.objects.get(pk=running.pk).status == RunStatus.TRAINING


def test_a_cancelled_run_stops_at_its_next_report_and_publishes_nothing(tenant_a,
                                                                        monkeypatch):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic())
        run = queue_run(tenant_a.tenant, make_plan(tenant_a.tenant, "p", **TEST_PLAN))
    real_progress = pipeline._progress

    def cancelled_during_training(run, iterations):
        report = real_progress(run, iterations)

        def callback(iteration, loss):
            if iteration == 1:  # an operator cancels while the model fits
                cancel_run(TrainingRun.objects.get(pk=run.pk), "too slow", "user ops")
            report(iteration, loss)

        return callback

    monkeypatch.setattr(pipeline, "_progress", cancelled_during_training)
    with tenant_a.scope():
        with pytest.raises(RunStopped):
            execute_run(TrainingRun.objects.get(pk=run.pk))
        run.refresh_from_db()
        assert run.status == RunStatus.CANCELLED and "too slow" in run.error
        assert run.progress["iteration"] < TEST_PLAN["training"]["iterations"]
        assert not ModelVersion.objects.exists()


def test_a_run_cancelled_before_publication_never_publishes(tenant_a, monkeypatch):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic())
        run = queue_run(tenant_a.tenant, make_plan(tenant_a.tenant, "p", **TEST_PLAN))
    real_evaluate = pipeline._evaluate

    def cancelled_while_evaluating(run, *args):
        report = real_evaluate(run, *args)
        cancel_run(TrainingRun.objects.get(pk=run.pk), "changed my mind", "user ops")
        return report

    monkeypatch.setattr(pipeline, "_evaluate", cancelled_while_evaluating)
    with tenant_a.scope(), pytest.raises(RunStopped):
        execute_run(TrainingRun.objects.get(pk=run.pk))
    with tenant_a.scope():
        assert not ModelVersion.objects.exists()
        assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_reaper_fails_silent_runs_only(tenant_a, tenant_b, running):
    with tenant_b.scope():
        quiet = make_run(make_plan(tenant_b.tenant, "q", **TEST_PLAN),
                         status=RunStatus.EVALUATING)
        TrainingRun.objects.filter(pk=quiet.pk).update(
            heartbeat_at=timezone.now() - timedelta(minutes=20))
        lost = make_run(make_plan(tenant_b.tenant, "lost", **TEST_PLAN),
                        status=RunStatus.QUEUED)
        TrainingRun.objects.filter(pk=lost.pk).update(
            queued_at=timezone.now() - timedelta(days=2))
    assert sorted(reap_stale_runs(stale_after=timedelta(minutes=15))) == sorted(
        [quiet.pk, lost.pk])
    with tenant_b.scope():
        quiet.refresh_from_db()
        assert quiet.status == RunStatus.FAILED and "no heartbeat" in quiet.error
        assert "status was evaluating" in quiet.error
        queue_run(tenant_b.tenant, quiet.plan)  # the plan is free again
    with tenant_a.scope():  # a run that reports keeps running
        assert TrainingRun.objects.get(pk=running.pk).status == RunStatus.TRAINING
    assert reap_stale_runs(stale_after=timedelta(minutes=15)) == []


def test_reaper_is_scheduled_in_beat():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="training.reap_stale_runs")
    assert task.enabled and task.interval.every == 60


def test_admin_action_cancels_runs(client, tenant_a, running):
    add_member(tenant_a.tenant, "own@alpha.test", Role.OWNER)
    client.force_login(get_user_model().objects.get(username="own@alpha.test"))
    response = client.post("/admin/training/trainingrun/", {
        "action": "cancel_runs", "_selected_action": [running.pk]}, follow=True)
    assert response.status_code == 200
    assert b"cancelled; its plan is free" in response.content
    with tenant_a.scope():
        run = TrainingRun.objects.get(pk=running.pk)
        assert run.status == RunStatus.CANCELLED and "own@alpha.test" in run.error
        queue_run(tenant_a.tenant, run.plan)
        with pytest.raises(RunInProgress):
            queue_run(tenant_a.tenant, run.plan)
