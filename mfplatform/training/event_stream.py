"""A tenant's events for a dataset build, streamed out of Postgres into numpy (issue #20).

Three binary COPY queries (mfplatform.training.copy_reader), all under the tenant's row-level
security: the tenant's users with their filter flags, its items with theirs, then its events
chunk by chunk. Each chunk is filtered as it arrives (flags looked up by primary key in numpy,
counted per filter) and only the kept events' columns stay: ids, timestamps and values as
int64/float64, event types as small codes into the tenant's type table.

The event query joins nothing: joined per event, its plan depended on the statistics, and a
tenant trained right after a bulk import (none yet) got nested loops that took 5.4 s for 1M
events where hash joins took 1.7 s and the join-free scan less still. An event whose user or
item this tenant cannot see is left out without being counted, as the join left it out.
Postgres does not sort either: numpy puts the kept events in (timestamp, id) order at the end
(a sort of the whole window in Postgres spilled to disk and held the first row back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfplatform.training.copy_reader import RowLayout, copy_chunks, copy_columns

# Why an event would be filtered out, as bits: on its user, on its item.
BOT, INTERNAL, NO_CONSENT, INVALID_ITEM = 1, 2, 4, 8
FILTER_BITS = {"exclude_bot": BOT, "exclude_internal": INTERNAL,
               "consent_required": NO_CONSENT, "valid_item": INVALID_ITEM}

_FLAGS = RowLayout({"id": ">i8", "flags": ">i4"})
USER_FLAGS_SQL = f"""
    SELECT id, (CASE WHEN is_bot THEN {BOT} ELSE 0 END)
               | (CASE WHEN is_internal THEN {INTERNAL} ELSE 0 END)
               | (CASE WHEN NOT consent THEN {NO_CONSENT} ELSE 0 END)
    FROM catalog_enduser WHERE tenant_id = %s"""
ITEM_FLAGS_SQL = f"""
    SELECT id, CASE WHEN deleted_at IS NOT NULL OR banned_at IS NOT NULL OR is_placeholder
                    THEN {INVALID_ITEM} ELSE 0 END
    FROM catalog_item WHERE tenant_id = %s"""
EVENTS = RowLayout({"id": ">i8", "timestamp": ">i8", "user_id": ">i8", "item_id": ">i8",
                    "event_type_id": ">i8", "value": ">f8"})
EVENTS_SQL = """
    SELECT id, "timestamp", user_id, item_id, event_type_id, coalesce(value, 'NaN')::float8
    FROM catalog_event
    WHERE tenant_id = %s AND "timestamp" >= %s AND "timestamp" < %s
      AND event_type_id = ANY(%s::int8[])"""
# timestamptz on the wire: microseconds since 2000-01-01 00:00 UTC.
_PG_EPOCH_UNIX_SECONDS = 946_684_800
_FLAG_CHUNK_ROWS = 1 << 20


@dataclass
class StreamedEvents:
    """The kept events in (timestamp, id) order and what each filter dropped."""

    user_ids: np.ndarray  # int64
    item_ids: np.ndarray  # int64
    type_codes: np.ndarray  # int16: positions in the type primary keys given
    values: np.ndarray  # float64, NaN where the event had no value
    timestamps: np.ndarray  # int64 unix seconds, rounded down
    counts: dict[str, int]


def positions(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each key in sorted_keys, whether it is there at all)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=np.intp), np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return at, sorted_keys[at] == keys


def _flag_table(cursor, sql: str, tenant_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted primary keys, their flags)."""
    rows = copy_columns(cursor, sql, [tenant_id], _FLAGS, _FLAG_CHUNK_ROWS)
    order = np.argsort(rows["id"], kind="stable")
    return rows["id"][order], rows["flags"][order]


def _flags_of(table: tuple[np.ndarray, np.ndarray], pks: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(flags of each primary key, whether the table has it at all)."""
    at, known = positions(table[0], pks)
    flags = table[1][at] if len(table[1]) else np.zeros(len(pks), dtype=np.int32)
    return flags, known


class _Column:
    """One column of the kept events, grown in place chunk by chunk: ndarray.resize
    reallocates its buffer (glibc remaps a large block's pages instead of copying them; numpy
    zero-fills the growth, hence small steps), where a list of chunks joined at the end held
    every event twice and left the heap fragmented (the resident peak ~50% above the traced
    one at 2M events)."""

    def __init__(self, dtype) -> None:
        self.array = np.zeros(0, dtype=dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.array):
            self.array.resize(max(end, len(self.array) + len(self.array) // 8), refcheck=False)
        self.array[self.size:end] = values
        self.size = end

    def take(self) -> np.ndarray:
        """The column at its length; this one is emptied."""
        array, self.array = self.array, np.zeros(0, dtype=self.array.dtype)
        array.resize(self.size, refcheck=False)
        return array


def in_order(stamps: np.ndarray, ids: np.ndarray) -> bool:
    """Whether the events are in (timestamp, id) order already (appended in time order, as
    they usually are): then no sort and no reordered copy of each column is needed."""
    pairs = len(stamps) - 1  # (event, the next one)
    for start in range(0, max(pairs, 0), _FLAG_CHUNK_ROWS):
        end = min(start + _FLAG_CHUNK_ROWS, pairs)
        earlier, later = stamps[start:end], stamps[start + 1:end + 1]
        if not (earlier <= later).all():
            return False
        tie = earlier == later
        if not (ids[start:end][tie] < ids[start + 1:end + 1][tie]).all():
            return False
    return True


class _Kept:
    """The kept events' columns, chunk by chunk, and the counts."""

    def __init__(self, cursor, tenant_id: int, type_pks: np.ndarray,
                 filters: dict[str, int]) -> None:
        self.users = _flag_table(cursor, USER_FLAGS_SQL, tenant_id)
        self.items = _flag_table(cursor, ITEM_FLAGS_SQL, tenant_id)
        self.type_pks = type_pks
        self.filters = filters  # counts key -> bit, the first matching filter counts a row
        self.counts = {"events_read": 0, **{f"filtered_{name}": 0 for name in filters}}
        self.columns = {name: _Column(dtype) for name, dtype in (
            ("id", np.int64), ("timestamp", np.int64), ("user_id", np.int64),
            ("item_id", np.int64), ("type_code", np.int16), ("value", np.float64))}

    def add(self, chunk: dict[str, np.ndarray]) -> None:
        user_flags, user_known = _flags_of(self.users, chunk["user_id"])
        item_flags, item_known = _flags_of(self.items, chunk["item_id"])
        type_at, type_known = positions(self.type_pks, chunk["event_type_id"])
        keep = user_known & item_known & type_known  # what the join would have returned
        self.counts["events_read"] += int(keep.sum())
        flags = user_flags | item_flags
        for name, bit in self.filters.items():
            hit = (flags & bit) != 0
            self.counts[f"filtered_{name}"] += int((hit & keep).sum())
            keep &= ~hit
        chunk["type_code"] = type_at
        for name, column in self.columns.items():
            column.append(chunk[name][keep])

    def column(self, name: str, order: np.ndarray | None = None) -> np.ndarray:
        """One column (in `order`); this object lets it go."""
        column = self.columns.pop(name).take()
        return column if order is None else column[order]

    def result(self) -> StreamedEvents:
        stamps, ids = self.column("timestamp"), self.column("id")
        order = None if in_order(stamps, ids) else np.lexsort((ids, stamps))
        del ids
        seconds = stamps if order is None else stamps[order]
        del stamps
        np.floor_divide(seconds, 1_000_000, out=seconds)
        seconds += _PG_EPOCH_UNIX_SECONDS
        self.counts["events_kept"] = int(len(seconds))
        return StreamedEvents(
            user_ids=self.column("user_id", order), item_ids=self.column("item_id", order),
            type_codes=self.column("type_code", order), values=self.column("value", order),
            timestamps=seconds, counts=self.counts)


def stream_events(cursor, tenant_id: int, start, cutoff, type_pks: np.ndarray,
                  filters: dict[str, int], chunk_rows: int) -> StreamedEvents:
    """The tenant's events of the given types (sorted primary keys, at most 32,767) in
    [start, cutoff), with the filters (name -> bit) applied. `cursor` is the raw psycopg
    cursor, the session's tenant scope already applied."""
    if len(type_pks) > np.iinfo(np.int16).max:
        raise ValueError("more event types than int16 codes")
    kept = _Kept(cursor, tenant_id, np.asarray(type_pks, dtype=np.int64), filters)
    for chunk in copy_chunks(cursor, EVENTS_SQL, [tenant_id, start, cutoff,
                                                  [int(pk) for pk in type_pks]],
                             EVENTS, chunk_rows):
        kept.add(chunk)
    return kept.result()
