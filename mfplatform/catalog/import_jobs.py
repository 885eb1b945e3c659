"""CSV imports started from the admin: the upload is kept in the default storage, a worker
imports it with the same code as `import_items` / `import_events` (all-or-nothing unless
partial), and every bad row lands in a CSV report next to it, downloadable from the job."""

from __future__ import annotations

import csv
import io
import logging
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from mfplatform.catalog.csv_import import (
    ITEM_COLUMNS,
    ImportFailed,
    ImportSummary,
    event_writer,
    item_writer,
    parse_mapping,
    run_import,
)
from mfplatform.catalog.event_validation import EVENT_FIELDS
from mfplatform.catalog.import_liveness import ImportStopped, ProgressReporter, finish_job
from mfplatform.catalog.models import ImportJob, ImportKind, ImportStatus
from tenants.models import Tenant

log = logging.getLogger(__name__)
IMPORT_TASK = "catalog.import_file"


class ImportJobError(ValueError):
    """The job cannot be started as asked (the mapping or options are wrong)."""


def check_mapping(kind: str, mapping: str, default_type: str = "") -> dict[str, str]:
    """The `field=column,...` text as a dict, or ImportJobError saying what is wrong."""
    fields = ITEM_COLUMNS if kind == ImportKind.ITEMS else set(EVENT_FIELDS)
    columns = parse_mapping(mapping, fields)
    required = {"item"} if kind == ImportKind.ITEMS else {"user", "item"}
    missing = required - columns.keys()
    if missing:
        raise ImportJobError(f"map the {', '.join(sorted(missing))} column(s): "
                             f"<field>=<column>,...")
    if kind == ImportKind.EVENTS and "type" not in columns and not default_type:
        raise ImportJobError("give a default event type or map a type column")
    return columns


def create_import_job(tenant: Tenant, kind: str, upload, mapping: dict[str, str],
                      options: dict, requested_by: str) -> ImportJob:
    """Keep the upload in the default storage and queue its import."""
    name = default_storage.save(f"imports/{tenant.pk}/{uuid.uuid4().hex}.csv",
                                ContentFile(upload.read()))
    job = ImportJob.objects.create(tenant=tenant, kind=kind, file=name,
                                   file_name=Path(upload.name).name[:255], mapping=mapping,
                                   options=options, requested_by=requested_by[:255])
    from mfplatform.celery import app

    app.send_task(IMPORT_TASK, args=(tenant.pk, job.pk))
    return job


def run_import_job(job: ImportJob) -> ImportJob:
    """Import the job's file (inside its tenant's context); the job ends succeeded or failed
    with its counts and, when rows were bad, the error report. Its counts and heartbeat are
    written after every chunk while it runs (catalog.import_liveness)."""
    now = timezone.now()
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=now, heartbeat_at=now)
    if not claimed:  # already taken by an earlier delivery, or reaped
        return job
    job.refresh_from_db()
    options = job.options or {}
    writer = (item_writer(job.tenant, options.get("tags_sep", "|"))
              if job.kind == ImportKind.ITEMS else
              event_writer(job.tenant, options.get("default_type") or None,
                           bool(options.get("create_items"))))
    try:
        with (ProgressReporter(job) as reporter, transaction.atomic(),
              default_storage.open(job.file, "rb") as upload):
            summary = run_import(upload, job.mapping, writer[0],
                                 bool(options.get("partial")), progress=False,
                                 prepare=writer[1], on_chunk=reporter.report,
                                 chunk_size=settings.IMPORT_CHUNK_ROWS)
            # In the import's transaction: the rows and the job's "succeeded" commit
            # together, or neither does (a worker killed here leaves a job to reap).
            if not _finish(job, ImportStatus.SUCCEEDED, "", summary):
                raise ImportStopped(job.pk)
            return job
    except ImportStopped:
        log.warning("import job %s was ended while it ran: rolled back", job.pk)
        job.refresh_from_db()
        return job
    except ImportFailed as failed:
        summary, error = failed.summary, str(failed)
    except (ValueError, OSError, DatabaseError) as exc:
        log.exception("import job %s failed", job.pk)
        summary, error = ImportSummary(), str(exc)
    _finish(job, ImportStatus.FAILED, error, summary)
    return job


def _finish(job: ImportJob, status: str, error: str, summary: ImportSummary) -> bool:
    if summary.errors:
        job.errors_file = default_storage.save(f"{job.file.removesuffix('.csv')}-errors.csv",
                                               ContentFile(_errors_csv(summary)))
    return finish_job(job, status, error, summary)


def _errors_csv(summary: ImportSummary) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "field", "error"])
    for error in summary.errors:
        writer.writerow([error.index, error.field, error.error])
    return out.getvalue().encode()
