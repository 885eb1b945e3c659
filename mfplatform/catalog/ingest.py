"""Bulk ingestion of items and end users, and the validation every kind of row shares (ids,
timestamps, numbers, row errors, results); events are `catalog.events`. Shared by the REST
endpoints and the CSV import commands.

Rows are validated in plain Python, column by column (per-row serializers are far too slow
for 10,000-row batches), ids are resolved with one query per kind. Every batch is one
transaction: all-or-nothing by default, or only the good rows with `partial`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils.dateparse import parse_datetime
from psycopg.types.json import Jsonb

from mfplatform.catalog.models import EndUser, Item
from mfplatform.catalog.signals import items_written
from tenants.models import Tenant

MAX_BATCH = 10_000
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_ID_LENGTH = 255
ID_RULE = f'a non-empty string of at most {MAX_ID_LENGTH} characters, without "/"'


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

    @property
    def rejected_rows(self) -> int:
        """Rows with at least one error (a row can have several)."""
        return len({error.index for error in self.rejected})

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated,
                "duplicates": self.duplicates,
                "rejected": [e.as_dict() for e in self.rejected], "written": self.written}



def check_batch(rows: Any) -> list:
    if not isinstance(rows, list):
        raise ValueError("the body must be a JSON list of objects")
    if len(rows) > MAX_BATCH:
        raise BatchTooLarge(f"at most {MAX_BATCH} rows per request; got {len(rows)}")
    return rows


# -- field validation ---------------------------------------------------------------------------

def _identifier(value: Any, addressable: bool = True) -> str | None:
    """A stripped id, or None. `addressable` ids (items, users) appear in URL paths, where a
    "/" would split them: they cannot hold one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if addressable and "/" in value:
        return None
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
    except (TypeError, ValueError, OverflowError) as exc:
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
                               f"required: {ID_RULE}"))
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
    values = [items[key] for key in sorted(items)]  # one lock order for concurrent batches
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
        tenant_id = tenant.pk
        transaction.on_commit(lambda: items_written.send(sender=Item, tenant_id=tenant_id))
    result.created = sum(inserted)
    result.updated = len(inserted) - result.created
    return result


# -- users --------------------------------------------------------------------------------------

USER_FIELDS = {"id", "external_id", "consent", "is_internal", "is_bot", "attributes"}


def _clean_user(index: int, row: Any, errors: list[RowError]) -> dict | None:
    if not isinstance(row, dict):
        errors.append(RowError(index, "", "expected an object"))
        return None
    unknown = set(row) - USER_FIELDS
    if unknown:
        errors.append(RowError(index, sorted(unknown)[0], "unknown field"))
        return None
    external_id = _identifier(row.get("external_id", row.get("id")))
    if external_id is None:
        errors.append(RowError(index, "external_id", f"required: {ID_RULE}"))
        return None
    user = {"external_id": external_id}
    for name, default in (("consent", True), ("is_internal", False), ("is_bot", False)):
        value = row.get(name, default)
        if not isinstance(value, bool):
            errors.append(RowError(index, name, "expected true or false"))
            return None
        user[name] = value
    # None (absent): the user keeps the attributes they have.
    attributes = row.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        errors.append(RowError(index, "attributes", "expected an object"))
        return None
    user["attributes"] = attributes
    return user


def upsert_users(tenant: Tenant, rows: Sequence[Any], partial: bool = False) -> IngestResult:
    errors: list[RowError] = []
    users: dict[str, dict] = {}
    for index, row in enumerate(rows):
        user = _clean_user(index, row, errors)
        if user is not None:
            users[user["external_id"]] = user  # the last row for an id wins
    result = IngestResult(rejected=errors)
    if errors and not partial:
        result.written = False
        return result
    if not users:
        return result
    values = [users[key] for key in sorted(users)]  # one lock order for concurrent batches
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO catalog_enduser (tenant_id, external_id, consent, is_internal, is_bot,
                                         attributes, created_at, updated_at)
            SELECT %s, r.external_id, r.consent, r.is_internal, r.is_bot,
                   coalesce(r.attributes, '{}'::jsonb), now(), now()
            FROM unnest(%s::text[], %s::bool[], %s::bool[], %s::bool[], %s::jsonb[])
                 AS r(external_id, consent, is_internal, is_bot, attributes)
            ON CONFLICT (tenant_id, external_id) DO UPDATE SET
                consent = EXCLUDED.consent, is_internal = EXCLUDED.is_internal,
                is_bot = EXCLUDED.is_bot, updated_at = now()
            RETURNING (xmax = 0)
            """,
            [tenant.pk, [v["external_id"] for v in values], [v["consent"] for v in values],
             [v["is_internal"] for v in values], [v["is_bot"] for v in values],
             [None if v["attributes"] is None else Jsonb(v["attributes"]) for v in values]])
        inserted = [row[0] for row in cursor.fetchall()]
        # Attributes change only where a row gives them: a row without (and the users that
        # events create) keeps what the user has. The rows are already locked, in order.
        given = [v for v in values if v["attributes"] is not None]
        if given:
            cursor.execute(
                "UPDATE catalog_enduser u SET attributes = r.attributes FROM unnest("
                "%s::text[], %s::jsonb[]) AS r(external_id, attributes) "
                "WHERE u.tenant_id = %s AND u.external_id = r.external_id",
                [[v["external_id"] for v in given], [Jsonb(v["attributes"]) for v in given],
                 tenant.pk])
    result.created = sum(inserted)
    result.updated = len(inserted) - result.created
    return result


# -- end users: deletion ------------------------------------------------------------------------

def delete_end_user(tenant: Tenant, user: EndUser) -> None:
    """Delete an end user with their events, suppressions and everything else that refers to
    them. The user's row is locked first: an ingestion batch holding the user (it takes a key
    share lock on every user it names) finishes before, and its events are then deleted too;
    a later batch naming the same external id creates a new user."""
    with transaction.atomic():
        locked = EndUser.objects.select_for_update().filter(tenant=tenant, pk=user.pk).first()
        if locked is not None:
            locked.delete()
