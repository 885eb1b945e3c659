"""Import jobs that show their progress and always end: counts and heartbeat while the file
is read, and the reaper for jobs whose worker died.

The import writes the whole file in one transaction (all-or-nothing), so what it reports while
it runs goes through a database session of its own (`ProgressReporter`): the admin and the
reaper see it at once, and a rollback keeps it. A worker killed mid-file takes its open
transaction with it (Postgres rolls back a dropped session), so nothing is half-written; the
job stays "running" until the reaper finds its heartbeat stale and fails it with the reason.
The job's final status is written inside the import's transaction and only while the job is
still running (`finish_job`): an import the reaper ended meanwhile rolls back (ImportStopped)
instead of committing under a job that says it failed.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from mfplatform.catalog.csv_import import ImportSummary
from mfplatform.catalog.models import ImportJob, ImportStatus
from tenants.context import rls_bypass, tenant_context

log = logging.getLogger(__name__)


class ImportStopped(Exception):
    """The job was ended by someone else (the reaper) while this worker imported it."""

    def __init__(self, job_id: int):
        super().__init__(f"import job {job_id} is no longer running")
        self.job_id = job_id


def summary_counts(summary: ImportSummary) -> dict[str, int]:
    return {"rows": summary.rows, "created": summary.created, "updated": summary.updated,
            "duplicates": summary.duplicates, "rejected": summary.rejected_rows}


class ProgressReporter:
    """Writes a running job's counts and heartbeat from a thread of its own, hence on a
    database session of its own, outside the import's transaction. `report` waits for the
    write (one short UPDATE a chunk) and raises ImportStopped once the job is no longer
    running, which rolls the import back."""

    def __init__(self, job: ImportJob):
        self.job_id = job.pk
        self._thread = ThreadPoolExecutor(max_workers=1,
                                          thread_name_prefix=f"import-{job.pk}-progress")

    def report(self, summary: ImportSummary) -> None:
        # The caller's context travels along: the thread acts as the same tenant.
        write = contextvars.copy_context().run
        if not self._thread.submit(write, self._write, summary_counts(summary)).result():
            raise ImportStopped(self.job_id)

    def _write(self, counts: dict[str, int]) -> bool:
        return bool(ImportJob.objects.filter(pk=self.job_id, status=ImportStatus.RUNNING)
                    .update(heartbeat_at=timezone.now(), **counts))

    def close(self) -> None:
        self._thread.submit(connections.close_all).result()  # the thread's own session
        self._thread.shutdown()

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def finish_job(job: ImportJob, status: str, error: str, summary: ImportSummary) -> bool:
    """Give a running job its final status and counts; False when it had already ended."""
    now = timezone.now()
    ended = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.RUNNING).update(
        status=status, error=error[:5000], finished_at=now, heartbeat_at=now,
        errors_file=job.errors_file, **summary_counts(summary))
    job.refresh_from_db()
    return bool(ended)


def stale_jobs(stale_after: timedelta | None = None,
               queued_after: timedelta | None = None) -> list[tuple[int, int]]:
    """(tenant id, job id) of every tenant's jobs whose worker has gone quiet: running with no
    heartbeat for `stale_after`, or queued and never taken for `queued_after`."""
    with rls_bypass():  # the reaper looks across tenants; it acts inside each one below
        return list(ImportJob.objects.filter(_silent(stale_after, queued_after))
                    .values_list("tenant_id", "pk"))


def _silent(stale_after: timedelta | None, queued_after: timedelta | None) -> Q:
    now = timezone.now()
    stale_after = stale_after or timedelta(seconds=settings.IMPORT_JOB_STALE_SECONDS)
    queued_after = queued_after or timedelta(seconds=settings.IMPORT_JOB_QUEUE_SECONDS)
    running = Q(status=ImportStatus.RUNNING)
    return (running & Q(heartbeat_at__lt=now - stale_after)
            | running & Q(heartbeat_at__isnull=True, started_at__lt=now - stale_after)
            | Q(status=ImportStatus.QUEUED, queued_at__lt=now - queued_after))


def reap_stale_import_jobs(stale_after: timedelta | None = None,
                           queued_after: timedelta | None = None) -> list[int]:
    """Fail every job whose worker has gone quiet (see `stale_jobs`); the ids failed. Its
    rows were never committed: the import's transaction died with the worker."""
    reaped = []
    for tenant_id, job_id in stale_jobs(stale_after, queued_after):
        with tenant_context(tenant_id):
            job = ImportJob.objects.filter(pk=job_id).first()
            if job is None:
                continue
            last = job.heartbeat_at or job.queued_at
            reason = (f"no heartbeat from the worker since {last:%Y-%m-%d %H:%M:%S} UTC "
                      f"(status was {job.status}, {job.rows:,} rows read): the worker "
                      f"stopped or lost the job; nothing was stored")
            # Still silent now: a worker that reported meanwhile keeps its job.
            if ImportJob.objects.filter(_silent(stale_after, queued_after), pk=job_id).update(
                    status=ImportStatus.FAILED, error=reason, finished_at=timezone.now()):
                log.warning("import job %s of tenant %s reaped: %s", job_id, tenant_id, reason)
                reaped.append(job_id)
    return reaped
