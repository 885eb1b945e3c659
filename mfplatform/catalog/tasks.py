"""Celery tasks: thin wrappers that take the tenant id explicitly and run in its context."""

from __future__ import annotations

from celery import shared_task

from mfplatform.catalog.import_jobs import IMPORT_TASK, run_import_job
from mfplatform.catalog.models import ImportJob
from tenants.context import tenant_context


@shared_task(name=IMPORT_TASK, ignore_result=True, acks_late=True)
def import_file(tenant_id: int, job_id: int) -> None:
    with tenant_context(tenant_id):
        job = ImportJob.objects.select_related("tenant").filter(pk=job_id).first()
        if job is not None:
            run_import_job(job)
