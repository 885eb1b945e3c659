"""An import job whose worker is killed outright (SIGKILL, main process and pool child) while
it imports: its counts moved while it ran, nothing of the file is stored, and the reaper
fails the job with the reason instead of leaving it "running" forever."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from mfplatform.catalog.import_liveness import reap_stale_import_jobs
from mfplatform.catalog.models import ImportJob, ImportKind, ImportStatus, Item
from mfplatform.catalog.tasks import import_file
from tests.conftest import wait_for
from tests.isolated_worker import IsolatedWorker

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 300_000  # at 500 rows a chunk: far longer to import than the test waits to kill it


@pytest.fixture
def slow_import_worker():
    worker = IsolatedWorker("prefork", IMPORT_CHUNK_ROWS="500")
    yield worker
    worker.stop()


def queued_job(fixture) -> ImportJob:
    """A queued job created directly (create_import_job would also send it to the shared
    worker)."""
    lines = "".join(f"item-{n},Title {n}\n" for n in range(ROWS))
    name = default_storage.save(f"imports/{fixture.tenant.pk}/faults.csv",
                                ContentFile(("id,title\n" + lines).encode()))
    with fixture.scope():
        return ImportJob.objects.create(tenant=fixture.tenant, kind=ImportKind.ITEMS,
                                        file=name, file_name="faults.csv",
                                        mapping={"item": "id", "title": "title"})


def test_a_killed_worker_leaves_nothing_half_written_and_the_reaper_ends_the_job(
        tenant_a, slow_import_worker):
    job = queued_job(tenant_a)
    slow_import_worker.send(import_file, (tenant_a.tenant.pk, job.pk))

    def importing():
        connection.close_if_unusable_or_obsolete()
        with tenant_a.scope():
            current = ImportJob.objects.get(pk=job.pk)
        return current.status == ImportStatus.RUNNING and current.rows >= 5_000 and current

    running = wait_for(importing, timeout=120, interval=0.1, worker=slow_import_worker)
    # Progress while it runs: counts and heartbeat are committed, its rows are not.
    assert running.accepted == running.rows and running.heartbeat_at is not None
    with tenant_a.scope():
        assert not Item.objects.exists()
    slow_import_worker.kill_all()

    with tenant_a.scope():
        job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING and 5_000 <= job.rows < ROWS
    # Nothing reports any more; once the heartbeat is older than the limit the reaper acts.
    wait_for(lambda: reap_stale_import_jobs(stale_after=timedelta(seconds=1)) == [job.pk],
             timeout=30, interval=0.5)
    with tenant_a.scope():
        job.refresh_from_db()
        assert job.status == ImportStatus.FAILED and job.finished_at is not None
        assert "no heartbeat" in job.error and "status was running" in job.error
        assert not Item.objects.exists()  # the killed transaction took every row with it
    assert reap_stale_import_jobs(stale_after=timedelta(seconds=1)) == []
