"""Celery tasks: thin wrappers that take the tenant id explicitly and run in its context.
The task that executes a run (`training.run`) is the registry's, `registry.tasks`: a run
ends in a publication, which the training layer cannot import."""

from __future__ import annotations

import logging

from celery import shared_task

from mfplatform.training.liveness import reap_stale_runs
from mfplatform.training.models import TrainingPlan
from mfplatform.training.services import RunInProgress, queue_run
from tenants.context import tenant_context
from tenants.models import Tenant

log = logging.getLogger(__name__)

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
