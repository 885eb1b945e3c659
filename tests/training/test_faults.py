"""Pulling plugs under a real run: a worker killed outright (main process and pool child,
SIGKILL), and the embedded Postgres restarted while the run trains. Neither leaves the run or
its plan stuck.

Each test runs its own worker on a broker folder of its own, so the session's shared worker
never takes (or is killed with) these runs.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from mfplatform.registry.tasks import train_plan
from mfplatform.training.liveness import reap_stale_runs
from mfplatform.training.models import ACTIVE_RUN_STATUSES, PlanRevision, RunStatus, TrainingRun
from tests.conftest import wait_for
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic
from tests.isolated_worker import IsolatedWorker

pytestmark = pytest.mark.django_db(transaction=True)


def slow_plan(iterations: int) -> dict:
    # 192 factors: ~5 ms an iteration on this data, so 1,000 iterations train for seconds
    # (at 64 factors a run was over before the test could see it start).
    return {**TEST_PLAN, "training": {**TEST_PLAN["training"], "factors": 192,
                                      "iterations": iterations}}


def queued_run(fixture, iterations: int) -> TrainingRun:
    """A queued run created directly (queue_run would also send it to the shared worker)."""
    with fixture.scope():
        load_synthetic(fixture.tenant, synthetic())
        plan = make_plan(fixture.tenant, "slow", **slow_plan(iterations))
        return TrainingRun.objects.create(
            tenant=fixture.tenant, plan=plan,
            plan_revision=PlanRevision.objects.get(plan=plan, revision=plan.revision),
            cutoff=plan.created_at + timedelta(seconds=1))


def training_started(fixture, run: TrainingRun):
    def check():
        connection.close_if_unusable_or_obsolete()
        with fixture.scope():
            current = TrainingRun.objects.get(pk=run.pk)
        return (current.status == RunStatus.TRAINING
                and current.progress.get("iteration", 0) >= 1) and current
    return check


@pytest.fixture
def worker_factory():
    started = []

    def start(pool: str) -> IsolatedWorker:
        worker = IsolatedWorker(pool)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_a_killed_worker_leaves_a_run_the_reaper_ends(tenant_a, worker_factory):
    run = queued_run(tenant_a, iterations=1000)  # seconds of training: killed long before
    worker = worker_factory("prefork")
    worker.send(train_plan, (run.tenant_id, run.pk))
    wait_for(training_started(tenant_a, run), timeout=120, worker=worker)
    worker.kill_all()

    client = tenant_a.client()
    stuck = client.post(f"/api/v1/plans/{run.plan_id}/train")
    assert stuck.status_code == 409  # nobody will ever finish it: only the reaper can

    # Nothing reports any more; once the heartbeat is older than the limit the reaper acts.
    wait_for(lambda: reap_stale_runs(stale_after=timedelta(seconds=1)) == [run.pk],
             timeout=30, interval=0.5)
    with tenant_a.scope():
        run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "no heartbeat" in run.error and "status was training" in run.error
    accepted = client.post(f"/api/v1/plans/{run.plan_id}/train")
    assert accepted.status_code == 202, accepted.json()


def restart_embedded_postgres(down_for: float) -> None:
    """Stop the embedded server (fast: every session is cut), wait, start it as pgserver did."""
    from pgserver._commands import pg_ctl

    pgdata = Path(settings.VAR_DIR) / "pgdata"
    assert (pgdata / "postmaster.pid").exists(), "the test needs the embedded database"
    socket_dir = connection.settings_dict["HOST"]
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    time.sleep(down_for)
    pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"],
           pgdata=pgdata, user=user, timeout=60)


def test_a_database_restart_mid_run_ends_the_run(tenant_a, worker_factory):
    run = queued_run(tenant_a, iterations=1000)  # the restart lands mid-run; a retry ends
    worker = worker_factory("solo")
    worker.send(train_plan, (run.tenant_id, run.pk))
    wait_for(training_started(tenant_a, run), timeout=120, worker=worker)
    # Down for longer than the task's first retry waits: the retry's first lookup meets the
    # outage too (it sat outside the task's try: the run stayed "training" forever).
    restart_embedded_postgres(down_for=3)
    connection.close()  # this process's session died with the server too

    def ended():
        connection.close_if_unusable_or_obsolete()
        # What beat does every minute: a run whose worker gave up while the database was
        # still away (its last retry could not even record the failure) is ended here.
        reap_stale_runs(stale_after=timedelta(seconds=30))
        with tenant_a.scope():
            current = TrainingRun.objects.get(pk=run.pk)
        return current.status not in ACTIVE_RUN_STATUSES and current

    final = wait_for(ended, timeout=180, interval=0.5, worker=worker)
    # The worker's next report met the dead session: the run was retried on a new one and
    # completed, or failed with the reason (by the worker or the reaper).
    assert final.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    assert final.attempts >= 2 or final.error, (final.status, final.attempts, final.error)
    if final.status == RunStatus.FAILED:
        assert final.error
    with tenant_a.scope():
        assert not TrainingRun.objects.filter(plan_id=run.plan_id,
                                              status__in=ACTIVE_RUN_STATUSES).exists()
    accepted = tenant_a.client().post(f"/api/v1/plans/{run.plan_id}/train")
    assert accepted.status_code == 202, accepted.json()


def test_a_second_delivery_of_a_running_run_leaves_it_to_the_first(tenant_a, worker_factory):
    """A broker delivers a message again while its first delivery still runs (Redis after its
    visibility timeout, a second worker after a restart): the second worker must not run the
    same run beside the first (two executors race each other's heartbeats and publication)."""
    run = queued_run(tenant_a, iterations=1000)
    first, second = worker_factory("solo"), worker_factory("solo")
    first.send(train_plan, (run.tenant_id, run.pk))
    wait_for(training_started(tenant_a, run), timeout=120, worker=first)
    second.send(train_plan, (run.tenant_id, run.pk))
    wait_for(lambda: "being run by another executor" in second.output(), timeout=120,
             worker=second)

    def ended():
        connection.close_if_unusable_or_obsolete()
        with tenant_a.scope():
            current = TrainingRun.objects.get(pk=run.pk)
        return current.status not in ACTIVE_RUN_STATUSES and current

    final = wait_for(ended, timeout=180, interval=0.5, worker=first)
    assert final.status == RunStatus.SUCCEEDED, final.error
    assert final.attempts == 1  # the second delivery never started it again
