"""Bulk ingestion of items, end users and events: validation and writing, shared by the REST
endpoints and the CSV import commands.

Rows are validated in plain Python, column by column (per-row serializers are far too slow
for 10,000-row batches; a vectorised pass accepts the common well-formed case and the per-value
rules name each bad value), ids are resolved with one query per kind, and events are written
through a temporary staging table filled by COPY and moved with one INSERT ... SELECT: COPY
cannot write into a table with row-level security, while INSERT ... SELECT still has the policy
check every row. Every batch is one transaction: all-or-nothing by default, or only the good
rows with `partial`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg.types.json import Jsonb

from mfplatform.catalog.models import EndUser, EventKind, EventType, Item
from tenants.context import apply_scope
from tenants.models import Tenant

MAX_BATCH = 10_000
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_ID_LENGTH = 255
ID_RULE = f'a non-empty string of at most {MAX_ID_LENGTH} characters, without "/"'
# |event value| above this is refused: a real rating, watch share or quantity is far smaller,
# and a huge one (1e300) would overflow the training arithmetic.
MAX_EVENT_VALUE = 1e9

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


def ensure_default_event_types(tenant: Tenant) -> dict[str, EventType]:
    existing = {t.name: t for t in EventType.objects.filter(tenant=tenant)}
    missing = [EventType(tenant=tenant, name=name, kind=kind)
               for name, kind in DEFAULT_EVENT_TYPES.items() if name not in existing]
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
                                   f"required: {ID_RULE}"))
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
    values = [users[key] for key in sorted(users)]  # one lock order for concurrent batches
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


# -- events -------------------------------------------------------------------------------------

# In the order errors are reported for a row.
EVENT_FIELDS = ("user", "item", "type", "value", "timestamp", "event_id")
_EVENT_FIELD_SET = frozenset(EVENT_FIELDS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass
class EventColumns:
    """A batch of events, column by column. `index` numbers the rows in error reports
    (positions in a JSON list, or line numbers in a file). A column left as None is absent
    from every row: `type` then takes the default type, `timestamp` the time of ingestion."""

    index: list[int]
    user: list
    item: list
    type: list | None = None
    value: list | None = None
    timestamp: list | None = None
    event_id: list | None = None

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def from_rows(cls, rows: Sequence[Any], errors: list[RowError]) -> EventColumns:
        """From a JSON list of objects; rows that are not objects, or carry unknown fields,
        are reported in `errors` and left out."""
        good: list[dict] = []
        index: list[int] = []
        for position, row in enumerate(rows):
            if not isinstance(row, dict):
                errors.append(RowError(position, "", "expected an object"))
            elif not row.keys() <= _EVENT_FIELD_SET:
                for name in sorted(set(row) - _EVENT_FIELD_SET):
                    errors.append(RowError(position, str(name), "unknown field"))
            else:
                good.append(row)
                index.append(position)
        _missing = object()

        def column(name: str) -> list | None:
            values = [row.get(name, _missing) for row in good]
            if all(v is _missing for v in values):
                return None
            return [None if v is _missing else v for v in values]

        type_column = [row.get("type", _missing) for row in good]
        return cls(index=index, user=[row.get("user") for row in good],
                   item=[row.get("item") for row in good],
                   # A missing type takes the default; an explicit null is an error.
                   type=[_DEFAULT if v is _missing else v for v in type_column],
                   value=column("value"), timestamp=column("timestamp"),
                   event_id=column("event_id"))

    def take(self, positions: list[int]) -> EventColumns:
        def pick(values: list | None) -> list | None:
            return None if values is None else [values[p] for p in positions]

        return EventColumns(pick(self.index), pick(self.user), pick(self.item),
                            pick(self.type), pick(self.value), pick(self.timestamp),
                            pick(self.event_id))


class _Default:
    def __repr__(self) -> str:
        return "(default)"


_DEFAULT = _Default()  # "the batch's default type" in a type column


# Column validators: a vectorised pass for the common case (every value well formed), and the
# per-value rules (the same functions the single-value paths use) for the exact error of each
# bad value. They return the clean column and {position: error}.

def _id_column(values: list, message: str) -> tuple[list, dict[int, str]]:
    if all(type(v) is str for v in values):
        stripped = [v.strip() for v in values]
        if not stripped or (min(map(len, stripped)) > 0
                            and max(map(len, stripped)) <= MAX_ID_LENGTH
                            and not any("/" in v for v in stripped)):
            return stripped, {}
    clean, bad = [], {}
    for position, value in enumerate(values):
        identifier = _identifier(value)
        if identifier is None:
            bad[position] = f"{message}: {ID_RULE}"
        clean.append(identifier)
    return clean, bad


def _type_column(values: list | None, n: int, types: dict[str, EventType],
                 default_type: str | None) -> tuple[list[int], dict[int, str]]:
    ids = {name: event_type.pk for name, event_type in types.items()}
    if values is None:
        values = [_DEFAULT] * n
    if default_type in ids:
        ids_or_default: dict[Any, int] = {**ids, _DEFAULT: ids[default_type]}
    else:
        ids_or_default = ids
    try:
        if set(values) <= ids_or_default.keys():
            return [ids_or_default[v] for v in values], {}
    except TypeError:  # unhashable values (lists, objects): the per-value pass reports them
        pass
    known = ", ".join(sorted(ids))
    clean, bad = [], {}
    for position, value in enumerate(values):
        name = default_type if value is _DEFAULT else value
        if isinstance(name, str) and name in ids:
            clean.append(ids[name])
        else:
            bad[position] = f"unknown event type {name!r}; known: {known}"
            clean.append(0)
    return clean, bad


def _kinds(values: list) -> set[type]:
    return set(map(type, values))


_NUMERIC_OR_TEXT = {str, int, float}  # bool is a type of its own here, and refused


def _value_column(values: list | None, n: int) -> tuple[np.ndarray, dict[int, str]]:
    """Floats, NaN where absent (null or empty)."""
    if values is None or _kinds(values) == {type(None)}:
        return np.full(n, np.nan), {}
    if _kinds(values) <= _NUMERIC_OR_TEXT:
        try:
            numbers = np.fromiter(map(float, values), dtype=np.float64, count=n)
        except (ValueError, OverflowError):  # OverflowError: an int of hundreds of digits
            pass
        else:
            if n == 0 or (np.isfinite(numbers).all()
                          and np.abs(numbers).max() <= MAX_EVENT_VALUE):
                return numbers, {}
    numbers, bad = np.full(n, np.nan), {}
    for position, value in enumerate(values):
        if value is None or value == "":
            continue
        try:
            number = _number(value)
        except ValueError as exc:
            bad[position] = str(exc)
            continue
        if abs(number) > MAX_EVENT_VALUE:
            bad[position] = f"expected a number between {-MAX_EVENT_VALUE:g} and " \
                            f"{MAX_EVENT_VALUE:g}"
        else:
            numbers[position] = number
    return numbers, bad


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _timestamp_column(values: list | None, n: int, now: datetime
                      ) -> tuple[np.ndarray, dict[int, str]]:
    """Microseconds since the epoch (UTC); absent (null or empty) means now."""
    now_us = _micros(now)
    if values is None:
        return np.full(n, now_us, dtype=np.int64), {}
    if _kinds(values) <= _NUMERIC_OR_TEXT:
        try:
            seconds = np.fromiter(map(float, values), dtype=np.float64, count=n)
        except (ValueError, OverflowError):
            pass
        else:
            # The common case: finite unix seconds after 1970 and not in the future.
            latest = (now + FUTURE_TOLERANCE).timestamp()
            if n == 0 or (np.isfinite(seconds).all() and seconds.min() >= 0
                          and seconds.max() <= latest):
                return np.round(seconds * 1e6).astype(np.int64), {}
    stamps, bad = np.full(n, now_us, dtype=np.int64), {}
    for position, value in enumerate(values):
        if value is None or value == "":
            continue
        try:
            stamps[position] = _micros(parse_timestamp(value, now))
        except ValueError as exc:
            bad[position] = str(exc)
    return stamps, bad


def _event_id_column(values: list | None, n: int) -> tuple[list, dict[int, str]]:
    """Event ids, None where absent (null or empty)."""
    if values is None or _kinds(values) == {type(None)}:
        return [None] * n, {}
    if _kinds(values) == {str}:
        stripped = [v.strip() for v in values]
        if stripped and min(map(len, stripped)) > 0 and max(map(len, stripped)) <= MAX_ID_LENGTH:
            return stripped, {}
    clean, bad = [], {}
    for position, value in enumerate(values):
        identifier = None if value is None or value == "" else _identifier(value,
                                                                           addressable=False)
        if identifier is None and not (value is None or value == ""):
            bad[position] = f"a non-empty string of at most {MAX_ID_LENGTH}"
        clean.append(identifier)
    return clean, bad


@dataclass
class _CleanEvents:
    index: list[int]
    user: list[str]
    item: list[str]
    type_id: list[int]
    value: np.ndarray  # NaN: no value
    micros: np.ndarray  # int64 microseconds since the epoch
    event_id: list[str | None]

    def take(self, positions: list[int]) -> _CleanEvents:
        return _CleanEvents([self.index[p] for p in positions],
                            [self.user[p] for p in positions],
                            [self.item[p] for p in positions],
                            [self.type_id[p] for p in positions],
                            self.value[positions], self.micros[positions],
                            [self.event_id[p] for p in positions])


def validate_events(columns: EventColumns, types: dict[str, EventType],
                    default_type: str | None, errors: list[RowError],
                    now: datetime | None = None) -> _CleanEvents:
    """Check every field of every row (all errors of a row are reported, in field order);
    return the rows without errors. Item ids are not resolved here."""
    now = now or timezone.now()
    n = len(columns)
    users, user_bad = _id_column(columns.user, "required: the user's external id")
    items, item_bad = _id_column(columns.item, "required: the item's external id")
    type_ids, type_bad = _type_column(columns.type, n, types, default_type)
    values, value_bad = _value_column(columns.value, n)
    micros, stamp_bad = _timestamp_column(columns.timestamp, n, now)
    event_ids, event_id_bad = _event_id_column(columns.event_id, n)
    clean = _CleanEvents(columns.index, users, items, type_ids, values, micros, event_ids)
    per_field = list(zip(EVENT_FIELDS, (user_bad, item_bad, type_bad, value_bad, stamp_bad,
                                        event_id_bad), strict=True))
    bad_positions = sorted(set().union(*(bad.keys() for _name, bad in per_field)))
    if not bad_positions:
        return clean
    for position in bad_positions:
        errors.extend(RowError(columns.index[position], name, bad[position])
                      for name, bad in per_field if position in bad)
    rejected = set(bad_positions)
    return clean.take([p for p in range(n) if p not in rejected])


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

    events: _CleanEvents
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


def _unknown_item_errors(events: _CleanEvents, known: Collection[str]) -> list[RowError]:
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
    ("event_id_len", ">i4")])


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return value


def _write_events(tenant: Tenant, cursor, events: _CleanEvents, items: dict[str, int],
                  users: dict[str, int], types: dict[str, EventType]) -> int:
    """COPY into a staging table (COPY cannot write into a table with row-level security),
    then one INSERT ... SELECT that the policy checks row by row; returns the rows stored."""
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS staging_events (ord int, user_id bigint, "
                   "item_id bigint, event_type_id bigint, value float8, micros bigint, "
                   "event_id text) ON COMMIT DROP")
    cursor.execute("TRUNCATE staging_events")
    n = len(events.index)
    user_ids = np.fromiter(map(users.__getitem__, events.user), dtype=np.int64, count=n)
    item_ids = np.fromiter(map(items.__getitem__, events.item), dtype=np.int64, count=n)
    type_ids = np.asarray(events.type_id, dtype=np.int64)
    if all(e is None for e in events.event_id):
        # Fixed-width rows: binary COPY straight from numpy (value NaN = no value).
        rows = np.empty(n, dtype=_STAGING_ROW)
        rows["fields"] = 7
        for name, width in (("ord", 4), ("user", 8), ("item", 8), ("type", 8), ("value", 8),
                            ("micros", 8)):
            rows[f"{name}_len"] = width
        rows["event_id_len"] = -1  # NULL
        rows["ord"] = np.arange(n)
        rows["user"], rows["item"], rows["type"] = user_ids, item_ids, type_ids
        rows["value"], rows["micros"] = events.value, events.micros
        with cursor.copy("COPY staging_events FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(_BINARY_HEADER + rows.tobytes() + _BINARY_TRAILER)
    else:
        values = ["NaN" if v != v else repr(v) for v in events.value.tolist()]
        event_ids = [_copy_text(e) for e in events.event_id]
        text = "".join(f"{o}\t{u}\t{i}\t{t}\t{v}\t{s}\t{e}\n" for o, u, i, t, v, s, e in zip(
            range(n), user_ids.tolist(), item_ids.tolist(), events.type_id, values,
            events.micros.tolist(), event_ids, strict=True))
        with cursor.copy("COPY staging_events FROM STDIN") as copy:
            copy.write(text)
    insert = """
        INSERT INTO catalog_event (tenant_id, user_id, item_id, event_type_id, value,
                                   timestamp, event_id, received_at)
        SELECT %(tenant)s, user_id, item_id, event_type_id, NULLIF(value, 'NaN'),
               timestamptz 'epoch' + micros * interval '1 microsecond', event_id, now()
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
