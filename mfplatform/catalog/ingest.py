"""Bulk ingestion of items, end users and events: validation and writing, shared by the REST
endpoints and the CSV import commands.

Rows are validated in plain Python (per-row serializers are far too slow for 10,000-row
batches), ids are resolved with one query per kind, and events are written through a
temporary staging table filled by COPY and moved with one INSERT ... SELECT: COPY cannot write
into a table with row-level security, while INSERT ... SELECT still has the policy check every
row. Every batch is one transaction: all-or-nothing by default, or only the good rows with
`partial`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg.types.json import Jsonb

from mfplatform.catalog.models import EventKind, EventType
from tenants.models import Tenant

MAX_BATCH = 10_000
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_ID_LENGTH = 255

DEFAULT_EVENT_TYPES: dict[str, tuple[float, str]] = {
    "click": (1.0, EventKind.POSITIVE),
    "meaningful_click": (1.0, EventKind.POSITIVE),
    "view": (0.5, EventKind.POSITIVE),
    "add_to_cart": (3.0, EventKind.POSITIVE),
    "purchase": (5.0, EventKind.POSITIVE),
    "watch_complete": (4.0, EventKind.POSITIVE),
    "rating": (1.0, EventKind.POSITIVE),
    "hide": (1.0, EventKind.NEGATIVE),
    "dislike": (1.0, EventKind.NEGATIVE),
    "report": (1.0, EventKind.POLICY),
}


class BatchTooLarge(ValueError):
    pass


@dataclass
class RowError:
    index: int
    field: str
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "error": self.error}


@dataclass
class IngestResult:
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: list[RowError] = field(default_factory=list)
    written: bool = True  # False: all-or-nothing and something was bad, so nothing stored

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated,
                "duplicates": self.duplicates,
                "rejected": [e.as_dict() for e in self.rejected], "written": self.written}


def ensure_default_event_types(tenant: Tenant) -> dict[str, EventType]:
    existing = {t.name: t for t in EventType.objects.filter(tenant=tenant)}
    missing = [EventType(tenant=tenant, name=name, weight=weight, kind=kind)
               for name, (weight, kind) in DEFAULT_EVENT_TYPES.items() if name not in existing]
    if missing and not existing:  # defaults are offered once, on first use
        EventType.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {t.name: t for t in EventType.objects.filter(tenant=tenant)}
    return existing


def check_batch(rows: Any) -> list:
    if not isinstance(rows, list):
        raise ValueError("the body must be a JSON list of objects")
    if len(rows) > MAX_BATCH:
        raise BatchTooLarge(f"at most {MAX_BATCH} rows per request; got {len(rows)}")
    return rows


# -- field validation ---------------------------------------------------------------------------

def _identifier(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if 0 < len(value) <= MAX_ID_LENGTH else None


def parse_timestamp(value: Any, now: datetime) -> datetime:
    """ISO 8601 (with offset, or UTC if none) or unix seconds; not in the future."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 time or unix seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("unix seconds out of range") from exc
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromtimestamp(float(text), tz=UTC) if _is_number(text) else \
                parse_datetime(text)
        except (ValueError, OverflowError, OSError) as exc:
            raise ValueError(f"not a valid time: {value!r}") from exc
        if moment is None:
            raise ValueError(f"not an ISO 8601 time: {value!r}")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        raise ValueError("expected an ISO 8601 time or unix seconds")
    if moment > now + FUTURE_TOLERANCE:
        raise ValueError(f"{moment.isoformat()} is in the future")
    return moment


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected a number, got {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


# -- items --------------------------------------------------------------------------------------

ITEM_FIELDS = {"id", "external_id", "title", "category", "tags", "attributes", "available"}


def _clean_item(index: int, row: Any, errors: list[RowError]) -> dict | None:
    if not isinstance(row, dict):
        errors.append(RowError(index, "", "expected an object"))
        return None
    unknown = set(row) - ITEM_FIELDS
    if unknown:
        errors.append(RowError(index, sorted(unknown)[0], "unknown field"))
        return None
    external_id = _identifier(row.get("external_id", row.get("id")))
    if external_id is None:
        errors.append(RowError(index, "external_id",
                               f"required: a non-empty string of at most {MAX_ID_LENGTH}"))
        return None
    item = {"external_id": external_id}
    for name, limit in (("title", 500), ("category", 200)):
        value = row.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > limit:
            errors.append(RowError(index, name, f"expected a string of at most {limit}"))
            return None
        item[name] = value
    tags = row.get("tags", [])
    if isinstance(tags, str):
        tags = [t for t in tags.split("|") if t]
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 100
                                             for t in tags):
        errors.append(RowError(index, "tags", "expected a list of strings (<= 100 chars)"))
        return None
    item["tags"] = tags
    attributes = row.get("attributes", {})
    if not isinstance(attributes, dict):
        errors.append(RowError(index, "attributes", "expected an object"))
        return None
    item["attributes"] = attributes
    available = row.get("available", True)
    if not isinstance(available, bool):
        errors.append(RowError(index, "available", "expected true or false"))
        return None
    item["available"] = available
    return item


def upsert_items(tenant: Tenant, rows: Sequence[Any], partial: bool = False) -> IngestResult:
    """Create or update items by external id (a placeholder item becomes a real one)."""
    errors: list[RowError] = []
    items: dict[str, dict] = {}
    for index, row in enumerate(rows):
        item = _clean_item(index, row, errors)
        if item is not None:
            items[item["external_id"]] = item  # the last row for an id wins
    result = IngestResult(rejected=errors)
    if errors and not partial:
        result.written = False
        return result
    if not items:
        return result
    values = list(items.values())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO catalog_item (tenant_id, external_id, title, category, tags, attributes,
                                      is_available, is_placeholder, created_at, updated_at)
            SELECT %s, r.external_id, r.title, r.category,
                   ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.attributes,
                   r.available, false, now(), now()
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::jsonb[], %s::jsonb[],
                        %s::bool[]) AS r(external_id, title, category, tags, attributes,
                                         available)
            ON CONFLICT (tenant_id, external_id) DO UPDATE SET
                title = EXCLUDED.title, category = EXCLUDED.category, tags = EXCLUDED.tags,
                attributes = EXCLUDED.attributes, is_available = EXCLUDED.is_available,
                is_placeholder = false, updated_at = now()
            RETURNING (xmax = 0)
            """,
            [tenant.pk, [v["external_id"] for v in values], [v["title"] for v in values],
             [v["category"] for v in values], [Jsonb(v["tags"]) for v in values],
             [Jsonb(v["attributes"]) for v in values], [v["available"] for v in values]])
        inserted = [row[0] for row in cursor.fetchall()]
    result.created = sum(inserted)
    result.updated = len(inserted) - result.created
    return result


# -- users --------------------------------------------------------------------------------------

USER_FIELDS = {"id", "external_id", "consent", "is_internal", "is_bot"}


def upsert_users(tenant: Tenant, rows: Sequence[Any], partial: bool = False) -> IngestResult:
    errors: list[RowError] = []
    users: dict[str, dict] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(RowError(index, "", "expected an object"))
            continue
        unknown = set(row) - USER_FIELDS
        if unknown:
            errors.append(RowError(index, sorted(unknown)[0], "unknown field"))
            continue
        external_id = _identifier(row.get("external_id", row.get("id")))
        if external_id is None:
            errors.append(RowError(index, "external_id",
                                   f"required: a non-empty string of at most {MAX_ID_LENGTH}"))
            continue
        flags = {}
        for name, default in (("consent", True), ("is_internal", False), ("is_bot", False)):
            value = row.get(name, default)
            if not isinstance(value, bool):
                errors.append(RowError(index, name, "expected true or false"))
                break
            flags[name] = value
        else:
            users[external_id] = {"external_id": external_id, **flags}
    result = IngestResult(rejected=errors)
    if errors and not partial:
        result.written = False
        return result
    if not users:
        return result
    values = list(users.values())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO catalog_enduser (tenant_id, external_id, consent, is_internal, is_bot,
                                         created_at, updated_at)
            SELECT %s, r.external_id, r.consent, r.is_internal, r.is_bot, now(), now()
            FROM unnest(%s::text[], %s::bool[], %s::bool[], %s::bool[])
                 AS r(external_id, consent, is_internal, is_bot)
            ON CONFLICT (tenant_id, external_id) DO UPDATE SET
                consent = EXCLUDED.consent, is_internal = EXCLUDED.is_internal,
                is_bot = EXCLUDED.is_bot, updated_at = now()
            RETURNING (xmax = 0)
            """,
            [tenant.pk, [v["external_id"] for v in values], [v["consent"] for v in values],
             [v["is_internal"] for v in values], [v["is_bot"] for v in values]])
        inserted = [row[0] for row in cursor.fetchall()]
    result.created = sum(inserted)
    result.updated = len(inserted) - result.created
    return result


# -- events -------------------------------------------------------------------------------------

EVENT_FIELDS = {"user", "item", "type", "value", "timestamp", "event_id"}


@dataclass
class _Event:
    index: int
    user: str
    item: str
    type_name: str
    value: float | None
    timestamp: datetime
    event_id: str | None


def _clean_events(rows: Iterable[tuple[int, Any]], types: dict[str, EventType],
                  default_type: str | None, errors: list[RowError]) -> list[_Event]:
    now = timezone.now()
    clean: list[_Event] = []
    for index, row in rows:
        if not isinstance(row, dict):
            errors.append(RowError(index, "", "expected an object"))
            continue
        unknown = set(row) - EVENT_FIELDS
        if unknown:
            errors.append(RowError(index, sorted(unknown)[0], "unknown field"))
            continue
        user = _identifier(row.get("user"))
        if user is None:
            errors.append(RowError(index, "user", "required: the user's external id"))
            continue
        item = _identifier(row.get("item"))
        if item is None:
            errors.append(RowError(index, "item", "required: the item's external id"))
            continue
        type_name = row.get("type", default_type)
        if not isinstance(type_name, str) or type_name not in types:
            errors.append(RowError(index, "type", f"unknown event type {type_name!r}; known: "
                                                  f"{', '.join(sorted(types))}"))
            continue
        value = row.get("value")
        if value is not None and value != "":
            try:
                value = _number(value)
            except ValueError as exc:
                errors.append(RowError(index, "value", str(exc)))
                continue
        else:
            value = None
        stamp = row.get("timestamp")
        if stamp is None or stamp == "":
            moment = now
        else:
            try:
                moment = parse_timestamp(stamp, now)
            except ValueError as exc:
                errors.append(RowError(index, "timestamp", str(exc)))
                continue
        event_id = row.get("event_id")
        if event_id is not None:
            event_id = _identifier(event_id)
            if event_id is None:
                errors.append(RowError(index, "event_id",
                                       f"a non-empty string of at most {MAX_ID_LENGTH}"))
                continue
        clean.append(_Event(index, user, item, type_name, value, moment, event_id))
    return clean


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
    return found


def _resolve_users(tenant: Tenant, cursor, external_ids: list[str]) -> dict[str, int]:
    """Unknown users are created (consent by default, as the API documents)."""
    cursor.execute(
        "INSERT INTO catalog_enduser (tenant_id, external_id, consent, is_internal, is_bot, "
        "created_at, updated_at) SELECT %s, e, true, false, false, now(), now() "
        "FROM unnest(%s::text[]) AS e ON CONFLICT (tenant_id, external_id) DO NOTHING",
        [tenant.pk, external_ids])
    cursor.execute("SELECT external_id, id FROM catalog_enduser WHERE tenant_id = %s "
                   "AND external_id = ANY(%s)", [tenant.pk, external_ids])
    return dict(cursor.fetchall())


def ingest_events(tenant: Tenant, rows: Sequence[Any] | Iterable[tuple[int, Any]],
                  partial: bool = False, default_type: str | None = None,
                  indexed: bool = False, allow_placeholders: bool | None = None
                  ) -> IngestResult:
    """Validate and store events. `rows` is a list of dicts, or (index, dict) pairs with
    `indexed=True` (CSV import passes file row numbers). `allow_placeholders` overrides the
    tenant's setting for unknown items."""
    types = ensure_default_event_types(tenant)
    errors: list[RowError] = []
    pairs = rows if indexed else enumerate(rows)
    events = _clean_events(pairs, types, default_type, errors)
    result = IngestResult(rejected=errors)
    if errors and not partial:
        result.written = False
        return result
    if not events:
        return result
    if allow_placeholders is None:
        allow_placeholders = bool(tenant.setting("allow_placeholder_items", False))
    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor, for COPY
        items = _resolve_items(tenant, cursor, sorted({e.item for e in events}),
                               allow_placeholders)
        unknown = [e for e in events if e.item not in items]
        if unknown:
            errors.extend(RowError(e.index, "item", f"unknown item {e.item!r} (send it to "
                                                    f"/api/v1/items first)") for e in unknown)
            errors.sort(key=lambda e: e.index)
            if not partial:
                transaction.set_rollback(True)
                result.written = False
                return result
            events = [e for e in events if e.item in items]
            if not events:
                return result
        users = _resolve_users(tenant, cursor, sorted({e.user for e in events}))
        result.created, result.duplicates = _write_events(tenant, cursor, events, items, users,
                                                          types)
    return result


def _write_events(tenant, cursor, events, items, users, types) -> tuple[int, int]:
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS staging_events (user_id bigint, "
                   "item_id bigint, event_type_id bigint, value float8, ts timestamptz, "
                   "event_id text, ord int) ON COMMIT DROP")
    cursor.execute("TRUNCATE staging_events")
    with cursor.copy("COPY staging_events FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "int8", "int8", "float8", "timestamptz", "text", "int4"])
        for order, e in enumerate(events):
            copy.write_row((users[e.user], items[e.item], types[e.type_name].pk, e.value,
                            e.timestamp, e.event_id, order))
    # Events with an event_id already stored (or repeated in the batch) are duplicates: the
    # unique (tenant, event_id) index turns them into no-ops.
    cursor.execute(
        "INSERT INTO catalog_event (tenant_id, user_id, item_id, event_type_id, value, "
        "timestamp, event_id, received_at) SELECT %s, user_id, item_id, event_type_id, value, "
        "ts, event_id, now() FROM staging_events ORDER BY ord "
        "ON CONFLICT (tenant_id, event_id) WHERE event_id IS NOT NULL DO NOTHING "
        "RETURNING user_id, item_id, event_type_id",
        [tenant.pk])
    created = cursor.fetchall()
    negative = {t.pk: t.name for t in types.values() if t.kind == EventKind.NEGATIVE}
    hidden = [(u, i, negative[t]) for u, i, t in created if t in negative]
    if hidden:
        cursor.execute(
            "INSERT INTO catalog_suppression (tenant_id, user_id, item_id, reason, created_at) "
            "SELECT %s, u, i, r, now() FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) "
            "AS s(u, i, r) ON CONFLICT (tenant_id, user_id, item_id) DO NOTHING",
            [tenant.pk, [h[0] for h in hidden], [h[1] for h in hidden],
             [h[2] for h in hidden]])
    return len(created), len(events) - len(created)
