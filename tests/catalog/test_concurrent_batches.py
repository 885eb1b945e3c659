"""Batches sent at the same time that share items and event ids, in opposite orders, all go
through: rows are locked in one order (no deadlock), every event is stored once."""

import threading

import pytest
from django.db import connection

from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import upsert_items, upsert_users
from mfplatform.catalog.models import Event, Item
from tenants.context import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

N = 5000


def _at_once(tenant, service, first, second) -> list[BaseException]:
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def send(batch):
        try:
            with tenant_context(tenant):
                start.wait(10)
                service(tenant, batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return failures


def test_overlapping_batches_in_opposite_orders(tenant_a):
    tenant = tenant_a.tenant
    items = [{"external_id": f"i{n}", "title": "x"} for n in range(N)]
    assert not _at_once(tenant, upsert_items, items, items[::-1])
    assert not _at_once(tenant, upsert_items, items, items[::-1])  # both update every row
    with tenant_a.scope():
        upsert_users(tenant, [{"external_id": f"u{n}"} for n in range(N)])
    rows = [{"user": f"u{n}", "item": f"i{n}", "type": "click", "event_id": f"e{n}"}
            for n in range(N)]
    assert not _at_once(tenant, ingest_events, rows, rows[::-1])
    with tenant_a.scope():
        assert Item.objects.count() == N and Event.objects.count() == N
