"""Bulk ingestion of events, shared by the REST endpoint and the CSV import command.

A batch is validated column by column (a vectorised pass accepts the common well-formed case,
and the per-value rules name each bad value), users and items are resolved with one query
each, and the rows are written through a temporary staging table filled by binary COPY and
moved with one INSERT ... SELECT: COPY cannot write into a table with row-level security,
while INSERT ... SELECT still has the policy check every row. One transaction per batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction

from mfplatform.catalog.event_validation import CleanEvents, EventColumns, validate_events
from mfplatform.catalog.ingest import (
    IngestResult,
    RowError,
)
from mfplatform.catalog.models import EventKind, EventType, Item
from tenants.context import apply_scope
from tenants.models import Tenant

# The event types a tenant starts with. Their weights in training are the plan's `events`.
DEFAULT_EVENT_TYPES: dict[str, str] = {
    "click": EventKind.POSITIVE,
    "meaningful_click": EventKind.POSITIVE,
    "view": EventKind.POSITIVE,
    "add_to_cart": EventKind.POSITIVE,
    "purchase": EventKind.POSITIVE,
    "watch_complete": EventKind.POSITIVE,
    "rating": EventKind.POSITIVE,
    "hide": EventKind.NEGATIVE,
    "dislike": EventKind.NEGATIVE,
    "report": EventKind.POLICY,
}


def ensure_default_event_types(tenant: Tenant) -> dict[str, EventType]:
    existing = {t.name: t for t in EventType.objects.filter(tenant=tenant)}
    missing = [EventType(tenant=tenant, name=name, kind=kind)
               for name, kind in DEFAULT_EVENT_TYPES.items() if name not in existing]
    if missing and not existing:  # defaults are offered once, on first use
        EventType.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {t.name: t for t in EventType.objects.filter(tenant=tenant)}
    return existing


def _resolve_items(tenant: Tenant, cursor, external_ids: list[str],
                   allow_placeholders: bool) -> dict[str, int]:
    cursor.execute("SELECT external_id, id FROM catalog_item WHERE tenant_id = %s "
                   "AND external_id = ANY(%s)", [tenant.pk, external_ids])
    found = dict(cursor.fetchall())
    missing = [e for e in external_ids if e not in found]
    if missing and allow_placeholders:
        cursor.execute(
            "INSERT INTO catalog_item (tenant_id, external_id, title, category, tags, "
            "attributes, is_available, is_placeholder, created_at, updated_at) "
            "SELECT %s, e, '', '', '{}', '{}', false, true, now(), now() FROM unnest(%s::text[]) "
            "AS e ON CONFLICT (tenant_id, external_id) DO NOTHING RETURNING external_id, id",
            [tenant.pk, missing])
        found.update(cursor.fetchall())
        raced = [e for e in missing if e not in found]  # created meanwhile by another batch
        if raced:
            cursor.execute("SELECT external_id, id FROM catalog_item WHERE tenant_id = %s "
                           "AND external_id = ANY(%s)", [tenant.pk, raced])
            found.update(cursor.fetchall())
    return found


def _resolve_users(tenant: Tenant, cursor, external_ids: list[str]) -> dict[str, int]:
    """Unknown users are created (with consent, as the API documents). Every user is locked
    against deletion (key share) until the batch commits: see delete_end_user."""
    cursor.execute(
        "INSERT INTO catalog_enduser (tenant_id, external_id, consent, is_internal, is_bot, "
        "created_at, updated_at) SELECT %s, e, true, false, false, now(), now() "
        "FROM unnest(%s::text[]) AS e ON CONFLICT (tenant_id, external_id) DO NOTHING",
        [tenant.pk, external_ids])
    cursor.execute("SELECT external_id, id FROM catalog_enduser WHERE tenant_id = %s "
                   "AND external_id = ANY(%s) FOR KEY SHARE", [tenant.pk, external_ids])
    return dict(cursor.fetchall())


@dataclass
class PreparedEvents:
    """A validated batch (validate_events' output with its errors) ready to be written; made
    without the database, so the CSV import prepares the next chunk while one is written."""

    events: CleanEvents
    errors: list[RowError]
    rows: int  # rows read, good and bad

    def __len__(self) -> int:
        return self.rows


def prepare_events(rows: Sequence[Any] | EventColumns, types: dict[str, EventType],
                   default_type: str | None = None) -> PreparedEvents:
    errors: list[RowError] = []
    columns = rows if isinstance(rows, EventColumns) else EventColumns.from_rows(rows, errors)
    events = validate_events(columns, types, default_type, errors)
    return PreparedEvents(events, errors, len(rows))


def ingest_events(tenant: Tenant, rows: Sequence[Any] | EventColumns | PreparedEvents,
                  partial: bool = False, default_type: str | None = None,
                  allow_placeholders: bool | None = None) -> IngestResult:
    """Validate and store a batch of events in one transaction.

    `rows` is a JSON list of objects (errors numbered by position), an EventColumns (errors
    numbered by its `index`: the CSV import's line numbers) or a PreparedEvents. All-or-nothing
    unless `partial`. Unknown users are created; unknown items are refused unless
    `allow_placeholders` (default: the tenant's "allow_placeholder_items" setting). An event
    id already stored, or repeated in the batch, is a duplicate and not stored again. Negative
    events (hide, dislike) add the item to the user's suppression list."""
    types = ensure_default_event_types(tenant)
    prepared = rows if isinstance(rows, PreparedEvents) else prepare_events(rows, types,
                                                                          default_type)
    events, errors = prepared.events, prepared.errors
    result = IngestResult(rejected=errors)
    if allow_placeholders is None:
        allow_placeholders = bool(tenant.setting("allow_placeholder_items", False))
    if errors and not partial:
        # Nothing is written, but every bad row is still listed: unknown items too.
        if not allow_placeholders and events.index:
            known = set(Item.objects.filter(tenant=tenant, external_id__in=set(events.item))
                        .values_list("external_id", flat=True))
            errors.extend(_unknown_item_errors(events, known))
        result.written = False
        errors.sort(key=lambda e: e.index)
        return result
    if not events.index:
        return result
    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor, for COPY
        apply_scope(connection)  # which, unlike Django's, does not set the tenant scope itself
        # Sorted: concurrent batches creating the same rows lock them in one order (no
        # deadlock between two batches naming the same new users in different orders).
        items = _resolve_items(tenant, cursor, sorted(set(events.item)), allow_placeholders)
        if len(items) < len(set(events.item)):
            known = [p for p, item in enumerate(events.item) if item in items]
            errors.extend(_unknown_item_errors(events, items))
            errors.sort(key=lambda e: e.index)
            if not partial:
                transaction.set_rollback(True)
                result.written = False
                return result
            events = events.take(known)
            if not events.index:
                return result
        errors.sort(key=lambda e: e.index)
        users = _resolve_users(tenant, cursor, sorted(set(events.user)))
        result.created = _write_events(tenant, cursor, events, items, users, types)
        result.duplicates = len(events.index) - result.created
    return result


def _unknown_item_errors(events: CleanEvents, known: Collection[str]) -> list[RowError]:
    return [RowError(events.index[p], "item",
                     f"unknown item {item!r} (send it to /api/v1/items first)")
            for p, item in enumerate(events.item) if item not in known]


# PostgreSQL's binary COPY format: a header, then per row the number of fields and each field
# as its length and big-endian bytes, then -1.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_BINARY_TRAILER = b"\xff\xff"
_STAGING_ROW = np.dtype([
    ("fields", ">i2"), ("ord_len", ">i4"), ("ord", ">i4"), ("user_len", ">i4"), ("user", ">i8"),
    ("item_len", ">i4"), ("item", ">i8"), ("type_len", ">i4"), ("type", ">i8"),
    ("value_len", ">i4"), ("value", ">f8"), ("micros_len", ">i4"), ("micros", ">i8"),
    ("event_id_len", ">i4"), ("rec_id_len", ">i4"), ("position_len", ">i4")])


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return value


def _fill_staging(cursor, events: CleanEvents, items: dict[str, int],
                  users: dict[str, int]) -> None:
    """The batch into the temporary staging table: binary COPY straight from numpy when
    every row is fixed-width (no event id, no recommendation id), else text COPY."""
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS staging_events (ord int, user_id bigint, "
                   "item_id bigint, event_type_id bigint, value float8, micros bigint, "
                   "event_id text, recommendation_id uuid, position smallint) "
                   "ON COMMIT DROP")
    cursor.execute("TRUNCATE staging_events")
    n = len(events.index)
    user_ids = np.fromiter(map(users.__getitem__, events.user), dtype=np.int64, count=n)
    item_ids = np.fromiter(map(items.__getitem__, events.item), dtype=np.int64, count=n)
    type_ids = np.asarray(events.type_id, dtype=np.int64)
    attributed = any(r is not None for r in events.recommendation_id) or any(
        p is not None for p in events.position)
    if not attributed and all(e is None for e in events.event_id):
        # Fixed-width rows: binary COPY straight from numpy (value NaN = no value).
        rows = np.empty(n, dtype=_STAGING_ROW)
        rows["fields"] = 9
        for name, width in (("ord", 4), ("user", 8), ("item", 8), ("type", 8), ("value", 8),
                            ("micros", 8)):
            rows[f"{name}_len"] = width
        rows["event_id_len"] = rows["rec_id_len"] = rows["position_len"] = -1  # NULL
        rows["ord"] = np.arange(n)
        rows["user"], rows["item"], rows["type"] = user_ids, item_ids, type_ids
        rows["value"], rows["micros"] = events.value, events.micros
        with cursor.copy("COPY staging_events FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(_BINARY_HEADER + rows.tobytes() + _BINARY_TRAILER)
    else:
        values = ["NaN" if v != v else repr(v) for v in events.value.tolist()]
        event_ids = [_copy_text(e) for e in events.event_id]
        rec_ids = ["\\N" if r is None else r for r in events.recommendation_id]
        positions = ["\\N" if p is None else str(p) for p in events.position]
        text = "".join(f"{o}\t{u}\t{i}\t{t}\t{v}\t{s}\t{e}\t{r}\t{p}\n"
                       for o, u, i, t, v, s, e, r, p in zip(
            range(n), user_ids.tolist(), item_ids.tolist(), events.type_id, values,
            events.micros.tolist(), event_ids, rec_ids, positions, strict=True))
        with cursor.copy("COPY staging_events FROM STDIN") as copy:
            copy.write(text)


def _write_events(tenant: Tenant, cursor, events: CleanEvents, items: dict[str, int],
                  users: dict[str, int], types: dict[str, EventType]) -> int:
    """COPY into a staging table (COPY cannot write into a table with row-level security),
    then one INSERT ... SELECT that the policy checks row by row; returns the rows stored."""
    _fill_staging(cursor, events, items, users)
    insert = """
        INSERT INTO catalog_event (tenant_id, user_id, item_id, event_type_id, value,
                                   timestamp, event_id, recommendation_id, position,
                                   received_at)
        SELECT %(tenant)s, user_id, item_id, event_type_id, NULLIF(value, 'NaN'),
               timestamptz 'epoch' + micros * interval '1 microsecond', event_id,
               recommendation_id, position, now()
        FROM staging_events"""
    if any(e is not None for e in events.event_id):
        # An event id already stored (or repeated in the batch: the first one counts) is a
        # duplicate: the unique (tenant, event_id) index makes it a no-op. Inserted in event
        # id order, so two batches sharing ids wait for each other in one order, never in a
        # cycle.
        insert += """ ORDER BY event_id COLLATE "C", ord
        ON CONFLICT (tenant_id, event_id) WHERE event_id IS NOT NULL DO NOTHING"""
    present = set(events.type_id)
    negative = [(t.pk, t.name) for t in types.values() if t.kind == EventKind.NEGATIVE
                and t.pk in present]
    if not negative:
        cursor.execute(insert, {"tenant": tenant.pk})
        return cursor.rowcount
    # The first negative event stored for a (user, item) pair gives the suppression its
    # reason.
    cursor.execute(
        f"""
        WITH stored AS ({insert} RETURNING id, user_id, item_id, event_type_id),
        suppressed AS (
            INSERT INTO catalog_suppression (tenant_id, user_id, item_id, reason, created_at)
            SELECT DISTINCT ON (s.user_id, s.item_id) %(tenant)s, s.user_id, s.item_id,
                   n.reason, now()
            FROM stored s JOIN unnest(%(types)s::bigint[], %(reasons)s::text[])
                 AS n(type_id, reason) ON n.type_id = s.event_type_id
            ORDER BY s.user_id, s.item_id, s.id
            ON CONFLICT (tenant_id, user_id, item_id) DO NOTHING
        )
        SELECT count(*) FROM stored
        """,
        {"tenant": tenant.pk, "types": [pk for pk, _name in negative],
         "reasons": [name for _pk, name in negative]})
    return cursor.fetchone()[0]
