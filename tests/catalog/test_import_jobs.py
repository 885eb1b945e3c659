"""CSV imports from the admin: the upload becomes a job a worker runs with the import
commands' code; a bad row stores nothing and lands in a downloadable report; another
tenant's job and report are out of reach."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from mfplatform.catalog.models import Event, ImportJob, ImportStatus, Item
from mfplatform.catalog.tasks import import_file
from tenants.models import Role
from tenants.services import add_member

pytestmark = pytest.mark.django_db

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
        heat = Item.objects.get(external_id="1")
        assert (heat.title, heat.category, heat.tags) == ("Heat", "Action", ["Action", "Crime"])
    page = client.get(f"/admin/catalog/importjob/{job.pk}/change/").content.decode()
    assert "succeeded" in page and "data.csv" in page


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
