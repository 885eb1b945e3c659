"""Celery tasks: thin wrappers that take the tenant id explicitly and run in its context."""

from __future__ import annotations

import logging
import traceback

from celery import shared_task
from django.db import InterfaceError, OperationalError, close_old_connections

from mfplatform.registry.cold import place_cold_items
from mfplatform.registry.runs import execute_run
from mfplatform.training.liveness import RunStopped
from mfplatform.training.models import TrainingRun
from mfplatform.training.pipeline import fail_run
from mfplatform.training.services import RUN_TASK
from tenants.context import tenant_context
from tenants.models import Tenant

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(bind=True, name=RUN_TASK, acks_late=True, reject_on_worker_lost=True,
             max_retries=5, soft_time_limit=3300, time_limit=3600)
def train_plan(self, tenant_id: int, run_id: int) -> None:
    with tenant_context(tenant_id):
        try:
            # Inside the try: a database restarted since the last task fails these too.
            run = (TrainingRun.objects.select_related("tenant", "plan", "plan_revision")
                   .filter(pk=run_id).first())
            if run is None or not run.is_active:
                return  # gone, finished by an earlier delivery, cancelled or reaped
            if execute_run(run, wait=False) is None:
                # Another delivery of this message (or an in-process run) has it: a worker
                # slot is not held waiting for it.
                log.info("run %s is being run by another executor: left to it", run_id)
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


@shared_task(name="registry.place_new_items", acks_late=True, max_retries=3,
             time_limit=1800)
def place_new_items(tenant_id: int) -> None:
    """Vectors for the tenant's items its active versions were not trained on
    (registry.cold)."""
    with tenant_context(tenant_id):
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is not None:  # deleted meanwhile
            place_cold_items(tenant)
