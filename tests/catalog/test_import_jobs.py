"""CSV imports from the admin: the upload becomes a job a worker runs with the import
commands' code; a bad row stores nothing and lands in a downloadable report; another
tenant's job and report are out of reach."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from mfplatform.catalog.csv_import import ImportSummary, item_writer, run_import
from mfplatform.catalog.import_liveness import (
    ImportStopped,
    ProgressReporter,
    finish_job,
    reap_stale_import_jobs,
)
from mfplatform.catalog.models import Event, ImportJob, ImportStatus, Item
from mfplatform.catalog.tasks import import_file
from tenants.models import Role
from tenants.services import add_member

# Transactional: a job reports its progress on a database session of its own, which sees only
# what was committed.
pytestmark = pytest.mark.django_db(transaction=True)

ITEMS = b"movieId,title,genres\n1,Heat,Action|Crime\n2,Up,Animation\n"
EVENTS = b"userId,movieId,rating,timestamp\n7,1,4.0,1700000000\n7,2,oops,1700000100\n"


def _login(client, tenant, email):
    add_member(tenant, email, Role.OWNER, password="pw-import-123")
    client.force_login(get_user_model().objects.get(username=email))
    return client


def _upload(client, kind, content, columns, **extra):
    return client.post("/admin/catalog/importjob/add/", {
        "kind": kind, "columns": columns, "tags_sep": "|",
        "upload": SimpleUploadedFile("data.csv", content, content_type="text/csv"), **extra})


def test_an_uploaded_catalogue_is_imported_by_the_job(client, tenant_a):
    _login(client, tenant_a.tenant, "owner@alpha.test")
    response = _upload(client, "items", ITEMS, "item=movieId,title=title,category=genres,"
                                               "tags=genres")
    assert response.status_code == 302, response.content.decode()[-2000:]
    with tenant_a.scope():
        job = ImportJob.objects.get()
        assert job.status == ImportStatus.QUEUED and job.file_name == "data.csv"
    import_file(tenant_a.tenant.pk, job.pk)  # what the worker runs
    with tenant_a.scope():
        job.refresh_from_db()
        assert (job.status, job.rows, job.created, job.rejected) == ("succeeded", 2, 2, 0)
        assert job.heartbeat_at >= job.started_at and job.accepted == 2
        heat = Item.objects.get(external_id="1")
        assert (heat.title, heat.category, heat.tags) == ("Heat", "Action", ["Action", "Crime"])
    page = client.get(f"/admin/catalog/importjob/{job.pk}/change/").content.decode()
    assert "succeeded" in page and "data.csv" in page
    assert "2 rows read · 2 accepted · 0 rejected" in page
    assert 'http-equiv="refresh"' not in page  # only a queued or running job reloads


def test_a_bad_row_stores_nothing_and_is_in_the_report(client, tenant_a, tenant_b):
    with tenant_a.scope():
        Item.objects.bulk_create([Item(tenant=tenant_a.tenant, external_id=i) for i in "12"])
    _login(client, tenant_a.tenant, "owner@alpha.test")
    _upload(client, "events", EVENTS, "user=userId,item=movieId,value=rating,"
                                      "timestamp=timestamp", default_type="rating")
    with tenant_a.scope():
        job = ImportJob.objects.get()
    import_file(tenant_a.tenant.pk, job.pk)
    with tenant_a.scope():
        job.refresh_from_db()
        assert (job.status, job.rows, job.rejected) == ("failed", 2, 1)
        assert not Event.objects.exists()
    report = client.get(f"/admin/catalog/importjob/{job.pk}/errors.csv")
    lines = b"".join(report.streaming_content).decode().splitlines()
    assert lines[0] == "line,field,error" and lines[1].startswith("3,value,")

    other = _login(client.__class__(), tenant_b.tenant, "owner@bravo.test")
    assert other.get(f"/admin/catalog/importjob/{job.pk}/errors.csv").status_code == 404
    assert "data.csv" not in other.get("/admin/catalog/importjob/").content.decode()


def test_a_mapping_without_the_required_columns_is_refused_on_the_form(client, tenant_a):
    _login(client, tenant_a.tenant, "owner@alpha.test")
    response = _upload(client, "events", EVENTS, "user=userId,value=rating")
    assert response.status_code == 200
    assert "map the item column" in response.content.decode()
    with tenant_a.scope():
        assert not ImportJob.objects.exists()


def test_a_running_job_shows_its_progress_and_reloads(client, tenant_a):
    with tenant_a.scope():
        job = ImportJob.objects.create(
            tenant=tenant_a.tenant, kind="events", file="imports/x.csv", file_name="big.csv",
            mapping={"user": "u", "item": "i"}, status=ImportStatus.RUNNING, rows=120_000,
            rejected=3, started_at=timezone.now(), heartbeat_at=timezone.now())
    _login(client, tenant_a.tenant, "owner@alpha.test")
    listing = client.get("/admin/catalog/importjob/").content.decode()
    assert "120,000 rows read · 119,997 accepted · 3 rejected (running; last report" in listing
    page = client.get(f"/admin/catalog/importjob/{job.pk}/change/").content.decode()
    assert "120,000 rows read" in page and 'http-equiv="refresh"' in page


def test_the_reaper_fails_silent_jobs_only(tenant_a, tenant_b):
    now = timezone.now()
    jobs = {}
    for fixture, name, status, heartbeat in [
            (tenant_a, "silent", ImportStatus.RUNNING, now - timedelta(minutes=10)),
            (tenant_b, "silent-b", ImportStatus.RUNNING, now - timedelta(minutes=10)),
            (tenant_a, "alive", ImportStatus.RUNNING, now),
            (tenant_a, "queued", ImportStatus.QUEUED, None),
            (tenant_a, "done", ImportStatus.SUCCEEDED, now - timedelta(minutes=10))]:
        with fixture.scope():
            jobs[name] = ImportJob.objects.create(
                tenant=fixture.tenant, kind="items", file="imports/x.csv", file_name=name,
                mapping={"item": "id"}, status=status, heartbeat_at=heartbeat,
                started_at=heartbeat)
    reaped = reap_stale_import_jobs(stale_after=timedelta(minutes=5),
                                    queued_after=timedelta(hours=1))
    assert sorted(reaped) == sorted([jobs["silent"].pk, jobs["silent-b"].pk])
    with tenant_a.scope():
        statuses = {job.file_name: job.status for job in ImportJob.objects.all()}
        assert "no heartbeat" in ImportJob.objects.get(file_name="silent").error
    assert statuses == {"silent": "failed", "alive": "running", "queued": "queued",
                        "done": "succeeded"}


def test_an_import_whose_job_was_ended_meanwhile_rolls_back(tenant_a, tmp_path):
    csv_file = tmp_path / "items.csv"
    csv_file.write_bytes(ITEMS)
    with tenant_a.scope():
        job = ImportJob.objects.create(tenant=tenant_a.tenant, kind="items", file="x.csv",
                                       mapping={"item": "movieId"},
                                       status=ImportStatus.FAILED)  # as the reaper left it
        write, prepare = item_writer(tenant_a.tenant)
        with ProgressReporter(job) as reporter, pytest.raises(ImportStopped):
            run_import(csv_file, {"item": "movieId"}, write, partial=False, progress=False,
                       prepare=prepare, on_chunk=reporter.report)
        assert not Item.objects.exists()
        assert not finish_job(job, ImportStatus.SUCCEEDED, "", ImportSummary(rows=2))
        job.refresh_from_db()
        assert (job.status, job.rows) == (ImportStatus.FAILED, 0)
