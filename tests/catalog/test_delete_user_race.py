"""Deleting a user while a batch naming them is being written leaves none of its events
behind (the event table has no database foreign keys; the ingestion lock stands in)."""

import threading
import time

import pytest
from django.db import connection, transaction

from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import delete_end_user, upsert_items
from mfplatform.catalog.models import EndUser, Event
from tenants.context import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


def test_user_deleted_during_an_ingestion_keeps_no_events(tenant_a):
    tenant = tenant_a.tenant
    with tenant_a.scope():
        upsert_items(tenant, [{"external_id": "i1"}])
        ingest_events(tenant, [{"user": "u", "item": "i1", "type": "click"}])
        user = EndUser.objects.get(external_id="u")
    written = threading.Event()
    failures: list[BaseException] = []

    def ingest_slowly():
        try:
            with tenant_context(tenant), transaction.atomic():
                ingest_events(tenant, [{"user": "u", "item": "i1", "type": "view"}])
                written.set()
                time.sleep(0.5)  # the deletion starts while this batch is uncommitted
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            written.set()
        finally:
            connection.close()

    writer = threading.Thread(target=ingest_slowly)
    writer.start()
    written.wait(10)
    with tenant_a.scope():
        delete_end_user(tenant, user)
    writer.join(10)
    assert not failures
    with tenant_a.scope():
        assert not EndUser.objects.filter(external_id="u").exists()
        assert not Event.objects.exists()
