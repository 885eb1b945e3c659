"""One executor per run (training.liveness.run_claim): a second delivery of a run's message
leaves it alone, and a run trained in process waits for the worker that has it. The claim is
taken from another thread (its own database session), as another process would."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from mfplatform.registry.runs import execute_run
from mfplatform.registry.tasks import train_plan
from mfplatform.training.liveness import run_claim
from mfplatform.training.models import PlanRevision, RunStatus, TrainingRun
from tenants.context import tenant_context
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db(transaction=True)


def queued_run(fixture) -> TrainingRun:
    """Created directly: queue_run would send it to the session's worker as well."""
    with fixture.scope():
        load_synthetic(fixture.tenant, synthetic())
        plan = make_plan(fixture.tenant, "claimed", **TEST_PLAN)
        return TrainingRun.objects.create(
            tenant=fixture.tenant, plan=plan,
            plan_revision=PlanRevision.objects.get(plan=plan, revision=plan.revision),
            cutoff=plan.created_at + timedelta(seconds=1))


class OtherExecutor:
    """Holds the run's claim in a session of its own until `release`."""

    def __init__(self, run_id: int):
        self.taken, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(run_id,))
        self.thread.start()
        assert self.taken.wait(10)

    def _hold(self, run_id: int) -> None:
        try:
            with run_claim(run_id, wait=False) as claimed:
                assert claimed
                self.taken.set()
                self.done.wait(60)
        finally:
            connection.close()

    def release(self) -> None:
        self.done.set()
        self.thread.join(10)


def current(fixture, run: TrainingRun) -> TrainingRun:
    with fixture.scope():
        return TrainingRun.objects.get(pk=run.pk)


def test_a_second_delivery_leaves_a_claimed_run_alone(tenant_a):
    run = queued_run(tenant_a)
    other = OtherExecutor(run.pk)
    train_plan(run.tenant_id, run.pk)  # returns at once: the run is someone else's
    untouched = current(tenant_a, run)
    assert (untouched.status, untouched.attempts, untouched.started_at) == (
        RunStatus.QUEUED, 0, None)
    other.release()
    train_plan(run.tenant_id, run.pk)
    assert current(tenant_a, run).status == RunStatus.SUCCEEDED


def test_a_run_trained_in_process_waits_for_the_executor_that_has_it(tenant_a):
    run = queued_run(tenant_a)
    other = OtherExecutor(run.pk)
    outcome: dict = {}

    def train_here():
        try:
            with tenant_context(run.tenant_id):
                outcome["version"] = execute_run(TrainingRun.objects.get(pk=run.pk))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = exc
        finally:
            connection.close()

    trainer = threading.Thread(target=train_here)
    trainer.start()
    time.sleep(1.0)
    assert trainer.is_alive() and current(tenant_a, run).attempts == 0  # waiting, not running
    other.release()
    trainer.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["version"] is not None
    finished = current(tenant_a, run)
    assert (finished.status, finished.attempts) == (RunStatus.SUCCEEDED, 1)
