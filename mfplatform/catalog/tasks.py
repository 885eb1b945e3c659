"""Celery tasks: thin wrappers that take the tenant id explicitly and run in its context."""

from __future__ import annotations

import logging

from celery import shared_task

from mfplatform.catalog.import_jobs import IMPORT_TASK, run_import_job
from mfplatform.catalog.import_liveness import reap_stale_import_jobs
from mfplatform.catalog.models import ImportJob
from tenants.context import tenant_context

log = logging.getLogger(__name__)


@shared_task(name=IMPORT_TASK, ignore_result=True, acks_late=True)
def import_file(tenant_id: int, job_id: int) -> None:
    with tenant_context(tenant_id):
        job = ImportJob.objects.select_related("tenant").filter(pk=job_id).first()
        if job is not None:
            run_import_job(job)


@shared_task(name="catalog.reap_stale_import_jobs", ignore_result=True)
def reap_stale_import_jobs_task() -> None:
    """Beat, every minute: fail the import jobs whose worker stopped reporting."""
    reaped = reap_stale_import_jobs()
    if reaped:
        log.warning("reaped import jobs without a live worker: %s", reaped)
