"""Catalogue rows as serving reads them, through statements prepared once per session."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import connection

from mfplatform.catalog.models import Item
from mfplatform.registry.vectors import raw_connection
from mfplatform.serving.rules import ItemInfo
from tenants.models import Tenant

ITEM_COLUMNS = ("id", "external_id", "title", "category", "attributes", "is_available",
                "is_placeholder", "banned_at", "deleted_at")

_ITEMS_SQL = (f"SELECT {', '.join(ITEM_COLUMNS)} FROM catalog_item "
              f"WHERE tenant_id = %(tenant)s AND id = ANY(%(ids)s::bigint[])")


@contextmanager
def prepared_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor that binds parameters on the server, so that the statements run on every
    request are parsed and planned once per database session (`prepare=True`); Django's
    cursors bind on the client, which sends new text, so a new plan, every time. Its
    statements go in a pipeline: preparing one (and the tenant scope, when the session served
    another tenant last) costs no round trip of its own. Fetch inside the block."""
    connection.ensure_connection()
    with connection.connection.pipeline(), psycopg.Cursor(serving_session()) as cursor:
        yield cursor


def serving_session() -> psycopg.Connection:
    """The raw connection in the running code's tenant scope, with room for
    SERVING_PREPARED_STATEMENTS prepared statements: a few per tenant served, so that many
    tenants' statements stay prepared instead of evicting one another (psycopg keeps 100).
    The session plans them generically from their first execution (settings.DATABASES)."""
    raw = raw_connection()
    raw.prepared_max = settings.SERVING_PREPARED_STATEMENTS
    return raw


def load_items(tenant: Tenant, pks: Iterable[int]) -> dict[int, ItemInfo]:
    """Catalogue rows by primary key, as rules see them (fallbacks load hundreds a request:
    a prepared statement, and attributes left as JSON text until a rule reads them)."""
    pks = [int(p) for p in pks]
    if not pks:
        return {}
    with prepared_cursor() as cursor:
        cursor.execute(_ITEMS_SQL, {"tenant": tenant.pk,
                                    "ids": "{" + ",".join(map(str, pks)) + "}"}, prepare=True)
        return {row[0]: ItemInfo(*row) for row in cursor.fetchall()}


def items_by_external_id(tenant: Tenant, external_ids: Iterable[str]) -> dict[str, int]:
    ids = [e for e in external_ids if e]
    if not ids:
        return {}
    return dict(Item.objects.filter(tenant=tenant, external_id__in=ids)
                .values_list("external_id", "id"))
