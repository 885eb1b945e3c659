"""Validation of a batch of events, column by column: a vectorised pass accepts the common
well-formed case, and the per-value rules name each bad value (row index and field). Nothing
here touches the database; `catalog.events` resolves and writes what passes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from mfplatform.catalog.ingest import (
    FUTURE_TOLERANCE,
    ID_RULE,
    MAX_ID_LENGTH,
    RowError,
    _identifier,
    _number,
    parse_timestamp,
)
from mfplatform.catalog.models import EventType

# |event value| above this is refused: a real rating, watch share or quantity is far smaller,
# and a huge one (1e300) would overflow the training arithmetic.
MAX_EVENT_VALUE = 1e9

# In the order errors are reported for a row.
EVENT_FIELDS = ("user", "item", "type", "value", "timestamp", "event_id", "recommendation_id",
                "position")
# An item's position in a response (1 = first); a response has at most serving's MAX_K items.
MAX_POSITION = 1000
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
    recommendation_id: list | None = None
    position: list | None = None

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
                   event_id=column("event_id"),
                   recommendation_id=column("recommendation_id"), position=column("position"))

    def take(self, positions: list[int]) -> EventColumns:
        def pick(values: list | None) -> list | None:
            return None if values is None else [values[p] for p in positions]

        return EventColumns(pick(self.index), pick(self.user), pick(self.item),
                            pick(self.type), pick(self.value), pick(self.timestamp),
                            pick(self.event_id), pick(self.recommendation_id),
                            pick(self.position))


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


def _optional_column(values: list | None, n: int, parse: Callable[[Any], Any],
                     expected: str) -> tuple[list, dict[int, str]]:
    """Each value as `parse` reads it, None where absent (null or empty); a present value
    that `parse` refuses (returns None) is None too, and its position says `expected`."""
    if values is None or _kinds(values) == {type(None)}:
        return [None] * n, {}
    clean, bad = [], {}
    for position, value in enumerate(values):
        parsed = None if value is None or value == "" else parse(value)
        if parsed is None and not (value is None or value == ""):
            bad[position] = expected
        clean.append(parsed)
    return clean, bad


def _event_id_column(values: list | None, n: int) -> tuple[list, dict[int, str]]:
    """Event ids, None where absent (null or empty)."""
    if values is not None and _kinds(values) == {str}:
        stripped = [v.strip() for v in values]
        if stripped and min(map(len, stripped)) > 0 and max(map(len, stripped)) <= MAX_ID_LENGTH:
            return stripped, {}
    return _optional_column(values, n, lambda value: _identifier(value, addressable=False),
                            f"a non-empty string of at most {MAX_ID_LENGTH}")


def _recommendation_id_column(values: list | None, n: int) -> tuple[list, dict[int, str]]:
    """Canonical UUID strings, None where absent. A well-formed id that names no response
    is kept: it is simply not attributed (the response may be past retention)."""
    return _optional_column(values, n, _uuid,
                            "expected the recommendation_id (a UUID) of a response")


def _uuid(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def _position_column(values: list | None, n: int) -> tuple[list, dict[int, str]]:
    """Positions (1 = first item of the response), None where absent."""
    return _optional_column(values, n, _position,
                            f"expected an integer between 1 and {MAX_POSITION}")


def _position(value: Any) -> int | None:
    if type(value) is int or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        return number if 1 <= number <= MAX_POSITION else None
    return None


@dataclass
class CleanEvents:
    index: list[int]
    user: list[str]
    item: list[str]
    type_id: list[int]
    value: np.ndarray  # NaN: no value
    micros: np.ndarray  # int64 microseconds since the epoch
    event_id: list[str | None]
    recommendation_id: list[str | None]
    position: list[int | None]

    def take(self, positions: list[int]) -> CleanEvents:
        return CleanEvents([self.index[p] for p in positions],
                            [self.user[p] for p in positions],
                            [self.item[p] for p in positions],
                            [self.type_id[p] for p in positions],
                            self.value[positions], self.micros[positions],
                            [self.event_id[p] for p in positions],
                            [self.recommendation_id[p] for p in positions],
                            [self.position[p] for p in positions])


def validate_events(columns: EventColumns, types: dict[str, EventType],
                    default_type: str | None, errors: list[RowError],
                    now: datetime | None = None) -> CleanEvents:
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
    rec_ids, rec_id_bad = _recommendation_id_column(columns.recommendation_id, n)
    positions, position_bad = _position_column(columns.position, n)
    clean = CleanEvents(columns.index, users, items, type_ids, values, micros, event_ids,
                        rec_ids, positions)
    per_field = list(zip(EVENT_FIELDS, (user_bad, item_bad, type_bad, value_bad, stamp_bad,
                                        event_id_bad, rec_id_bad, position_bad), strict=True))
    bad_positions = sorted(set().union(*(bad.keys() for _name, bad in per_field)))
    if not bad_positions:
        return clean
    for position in bad_positions:
        errors.extend(RowError(columns.index[position], name, bad[position])
                      for name, bad in per_field if position in bad)
    rejected = set(bad_positions)
    return clean.take([p for p in range(n) if p not in rejected])
