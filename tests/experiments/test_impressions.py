"""Every response's impression: what was shown, written off the request path."""

import gc
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from mfplatform.experiments.impressions import (
    BUFFER,
    ImpressionRow,
    drop_old_impressions,
    flush_impressions,
)
from mfplatform.experiments.models import Impression
from tenants.context import rls_bypass
from tests.conftest import REPO, make_tenant, subprocess_env, wait_for


def test_a_recommendation_response_is_recorded_with_its_items_in_order(served):
    body = served.client().get("/api/v1/recommendations?user=user-3&k=5").json()
    assert body["experiment"] is None and body["variant"] is None
    assert Impression.objects.filter(tenant=served.tenant).count() == 0  # not yet written
    assert flush_impressions() == 1
    with served.scope():
        row = Impression.objects.get(recommendation_id=body["recommendation_id"])
        from mfplatform.catalog.models import Item
        shown = [Item.objects.get(pk=pk).external_id for pk in row.items]
    assert shown == [i["item"] for i in body["items"]]
    assert row.sources == [i["source"] for i in body["items"]]
    assert row.surface == "recommendations" and row.user_external_id == "user-3"
    assert row.user_id is not None and row.model_version_id == served.version.pk
    assert row.latency_ms > 0 and row.experiment_id is None and row.variant == ""


def test_a_similar_items_response_is_recorded(served):
    body = served.client().get("/api/v1/items/item-4/similar?k=4&user=user-1").json()
    flush_impressions()
    with served.scope():
        row = Impression.objects.get(recommendation_id=body["recommendation_id"])
    assert row.surface == "similar_items" and len(row.items) == len(body["items"]) == 4
    assert row.user_external_id == "user-1" and row.user_id is not None


def test_logging_can_be_switched_off(served):
    with override_settings(IMPRESSION_LOGGING=False):
        served.client().get("/api/v1/recommendations?user=user-3&k=5")
    assert len(BUFFER) == 0


def test_a_full_buffer_drops_rows_instead_of_growing(tenant_a):
    with override_settings(IMPRESSION_BUFFER_ROWS=3):
        for _ in range(5):
            BUFFER.add(_row(tenant_a.tenant.pk))
        assert len(BUFFER) == 3


def test_waiting_rows_leave_the_garbage_collectors_watch_at_its_first_pass(tenant_a):
    # Rows the collector kept tracking would live into its oldest generation until written
    # and bring on extra full collections of the whole web process.
    row = _row(tenant_a.tenant.pk, items=[30, 10, 20])
    row.sources = ["mf", 'say "hi"', "back\\slash"]  # quoted for the array literal, still text
    BUFFER.add(row)
    gc.collect(0)
    waiting = list(BUFFER._rows)
    assert len(waiting) == 1 and not gc.is_tracked(waiting[0])
    assert flush_impressions() == 1
    with tenant_a.scope():
        stored = Impression.objects.get(recommendation_id=row.recommendation_id)
    assert stored.sources == row.sources and stored.items == row.items


def test_rows_of_two_tenants_are_each_seen_by_their_own_tenant_only(tenant_a, tenant_b):
    BUFFER.add(_row(tenant_a.tenant.pk))
    BUFFER.add(_row(tenant_b.tenant.pk))
    BUFFER.add(_row(tenant_b.tenant.pk))
    assert flush_impressions() == 3
    with tenant_a.scope():  # the second wall: A's session sees A's row only
        assert Impression.objects.count() == 1
        from django.db import connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM experiments_impression")
            assert cursor.fetchone()[0] == 1


def test_any_text_survives_the_write(tenant_a):
    """The arrays go to COPY as literals the writer formats itself: quotes, backslashes,
    commas, braces, blanks, tabs and the word NULL come back as they were sent."""
    sources = ["mf", 'a "quoted", {braced} \\ source', "", "NULL", "tab\there", "é\nnext"]
    row = _row(tenant_a.tenant.pk, items=[3, 1, 2, 9_000_000_000], sources=sources,
               user_external_id='u\t"1"\\n', variant="B\\")
    BUFFER.add(row)
    assert flush_impressions() == 1
    with tenant_a.scope():
        stored = Impression.objects.get(recommendation_id=row.recommendation_id)
    assert stored.items == [3, 1, 2, 9_000_000_000] and stored.sources == sources
    assert stored.user_external_id == 'u\t"1"\\n' and stored.variant == "B\\"


def test_many_tenants_rows_are_one_insert_prepared_once(tenant_a, tenant_b, monkeypatch):
    """Traffic over many tenants puts a few rows of each in a batch: one INSERT writes them
    all (not one per tenant), prepared once for the session."""
    import psycopg
    from django.db import connection

    inserts = []
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        if str(query).startswith("INSERT INTO experiments_impression"):
            inserts.append(query)
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    tenant_c = make_tenant("charlie")
    for round_ in range(2):
        for fixture in (tenant_a, tenant_b, tenant_c):
            BUFFER.add(_row(fixture.tenant.pk))
        assert flush_impressions() == 3
        assert len(inserts) == round_ + 1
    prepared = [q for q, _types in connection.connection._prepared._names
                if q.startswith(b"INSERT INTO experiments_impression")]
    assert len(prepared) == 1
    for fixture in (tenant_a, tenant_b, tenant_c):
        with fixture.scope():
            assert Impression.objects.count() == 2


def test_retention_drops_old_rows_in_batches(tenant_a):
    old = timezone.now() - timedelta(days=40)
    for _ in range(5):
        BUFFER.add(_row(tenant_a.tenant.pk, created_at=old))
    BUFFER.add(_row(tenant_a.tenant.pk))
    flush_impressions()
    assert drop_old_impressions(days=30, batch=2) == 5
    with rls_bypass():
        assert Impression.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_within_the_flush_interval(tenant_a):
    with override_settings(IMPRESSION_BACKGROUND_FLUSH=True, IMPRESSION_FLUSH_SECONDS=0.2):
        BUFFER.add(_row(tenant_a.tenant.pk))
        with tenant_a.scope():
            assert wait_for(lambda: Impression.objects.count() == 1, timeout=30)
        BUFFER.close()  # the thread stops; nothing is left behind
    assert len(BUFFER) == 0


EXIT_SCRIPT = """
import os, sys, uuid, django
os.environ["DJANGO_SETTINGS_MODULE"] = "mfplatform.test_settings"
django.setup()
from mfplatform.experiments.impressions import ImpressionRow, record
record(ImpressionRow(int(sys.argv[1]), uuid.UUID(sys.argv[2]), "recommendations", "u", None,
                     [1, 2], ["mf", "mf"], None, None, "", 1.0, False))
# no flush: the interpreter's exit writes it
"""


@pytest.mark.django_db(transaction=True)
def test_what_waits_is_written_when_the_process_exits(tenant_a):
    marker = uuid.uuid4()
    env = subprocess_env(IMPRESSION_BACKGROUND_FLUSH="0", IMPRESSION_FLUSH_SECONDS="3600")
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(tenant_a.tenant.pk), str(marker)],
                   cwd=REPO, env=env, check=True, timeout=120)
    with tenant_a.scope():
        assert Impression.objects.filter(recommendation_id=marker).count() == 1


def _row(tenant_id: int, **fields) -> ImpressionRow:
    values = dict(tenant_id=tenant_id, recommendation_id=uuid.uuid4(),
                  surface="recommendations", user_external_id="u", user_id=None, items=[1],
                  sources=["mf"], model_version_id=None, experiment_id=None, variant="",
                  latency_ms=1.0, fallback=False)
    values.update(fields)
    return ImpressionRow(**values)
