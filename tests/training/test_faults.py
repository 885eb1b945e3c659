"""Pulling plugs under a real run: a worker killed outright (main process and pool child,
SIGKILL), and the embedded Postgres restarted while the run trains. Neither leaves the run or
its plan stuck.

Each test runs its own worker on a broker folder of its own, so the session's shared worker
never takes (or is killed with) these runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from mfplatform.celery import app
from mfplatform.registry.tasks import train_plan
from mfplatform.training.liveness import reap_stale_runs
from mfplatform.training.models import ACTIVE_RUN_STATUSES, PlanRevision, RunStatus, TrainingRun
from mfplatform.training.queues import WORKER_QUEUES
from tests.conftest import REPO, subprocess_env, wait_for
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db(transaction=True)


def slow_plan(iterations: int) -> dict:
    return {**TEST_PLAN, "training": {**TEST_PLAN["training"], "factors": 64,
                                      "iterations": iterations}}


class IsolatedWorker:
    """A `celery worker` on the test database with a broker folder of its own, in a process
    group of its own (so that the main process and its pool children can be killed at once)."""

    def __init__(self, pool: str):
        self.broker_dir = REPO / "var" / f"test-broker-faults-{uuid.uuid4().hex[:8]}"
        self.log = self.broker_dir / "worker.log"
        self.folders = {name: self.broker_dir / name for name in ("queue", "processed",
                                                                  "control")}
        for folder in self.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mfplatform", "worker", "--loglevel", "INFO",
             "--concurrency", "1", "--pool", pool, "--without-heartbeat", "--without-gossip",
             "--without-mingle", "--queues", ",".join(WORKER_QUEUES["small"])],
            cwd=REPO, env=subprocess_env(CELERY_BROKER_DIR=str(self.broker_dir)),
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def send_run(self, run: TrainingRun) -> None:
        options = {"data_folder_in": str(self.folders["queue"]),
                   "data_folder_out": str(self.folders["queue"]),
                   "processed_folder": str(self.folders["processed"]),
                   "control_folder": str(self.folders["control"]), "store_processed": False}
        with app.connection_for_write(transport_options=options) as conn:
            train_plan.apply_async((run.tenant_id, run.pk), connection=conn)

    def kill_all(self) -> None:
        """SIGKILL to the worker's whole process group: main process and pool child."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()
        import shutil

        shutil.rmtree(self.broker_dir, ignore_errors=True)


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
    run = queued_run(tenant_a, iterations=1000)  # minutes of training: killed long before
    worker = worker_factory("prefork")
    worker.send_run(run)
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
    run = queued_run(tenant_a, iterations=60)
    worker = worker_factory("solo")
    worker.send_run(run)
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
