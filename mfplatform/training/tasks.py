"""Celery tasks: thin wrappers that take the tenant id explicitly and run in its context."""

from __future__ import annotations

import logging
import traceback

from celery import shared_task
from django.db import InterfaceError, OperationalError, close_old_connections

from mfplatform.training.liveness import RunStopped, reap_stale_runs
from mfplatform.training.models import TrainingPlan, TrainingRun
from mfplatform.training.pipeline import execute_run, fail_run
from mfplatform.training.services import RunInProgress, queue_run
from tenants.context import tenant_context
from tenants.models import Tenant

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(bind=True, name="training.run", acks_late=True, reject_on_worker_lost=True,
             max_retries=5, soft_time_limit=3300, time_limit=3600)
def train_plan(self, tenant_id: int, run_id: int) -> None:
    with tenant_context(tenant_id):
        try:
            # Inside the try: a database restarted since the last task fails this lookup too.
            run = (TrainingRun.objects.select_related("tenant", "plan", "plan_revision")
                   .filter(pk=run_id).first())
            if run is None or not run.is_active:
                return  # gone, finished by an earlier delivery, cancelled or reaped
            execute_run(run)
        except RunStopped:
            log.info("run %s was cancelled or reaped while running: stopped", run_id)
        except TRANSIENT as exc:
            close_old_connections()
            if self.request.retries < self.max_retries:
                log.warning("run %s: transient database error, retrying: %s", run_id, exc)
                raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
            fail_run(run_id, tenant_id, f"gave up after {self.max_retries} retries: {exc}")
        except Exception as exc:
            log.exception("run %s failed", run_id)
            fail_run(run_id, tenant_id, f"{type(exc).__name__}: {exc}\n"
                                        f"{traceback.format_exc(limit=8)}")


@shared_task(name="training.scheduled_run", ignore_result=True)
def scheduled_run(tenant_id: int, plan_id: int) -> None:
    with tenant_context(tenant_id):
        tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
        plan = TrainingPlan.objects.filter(pk=plan_id, is_active=True).first()
        if tenant is None or plan is None:
            return
        try:
            queue_run(tenant, plan, trigger="schedule")
        except RunInProgress as busy:
            log.info("scheduled run of plan %s skipped: %s", plan_id, busy)


@shared_task(name="training.reap_stale_runs", ignore_result=True)
def reap_stale_runs_task() -> None:
    """Beat, every minute: fail the runs whose worker stopped reporting (training.liveness)."""
    reaped = reap_stale_runs()
    if reaped:
        log.warning("reaped runs without a live worker: %s", reaped)
