"""A tenant's events out of Postgres in chunks, straight into numpy arrays (issue #20).

`COPY (SELECT ...) TO STDOUT (FORMAT binary)`: the query runs under the session's row-level
security like any other SELECT (apply_scope first: this is the raw psycopg connection). Every
column has a fixed binary width and none is NULL, so each row has the same size and a chunk of
rows is one `np.frombuffer` with a structured dtype (big-endian, as the wire has it), checked
field by field against the layout. Only numpy arrays are kept, filtered chunk by chunk; no
Python object per event ever exists. Measured against a server-side cursor with fetchmany
(psycopg builds a tuple per row): COPY was faster and smaller (benchmarks/RESULTS.md).

The rows come unsorted, and numpy puts them in (timestamp, id) order at the end: a sort of the
whole window in Postgres spilled to disk and held the first row back until it finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# The SELECT list every streamed query returns, in this order, with these types.
COLUMNS = ("id", "timestamp", "user_id", "item_id", "event_type_id", "value", "flags")
_WIRE = {"id": ">i8", "timestamp": ">i8", "user_id": ">i8", "item_id": ">i8",
         "event_type_id": ">i8", "value": ">f8", "flags": ">i4"}
ROW = np.dtype([("n_fields", ">i2")] + [
    pair for name in COLUMNS for pair in ((f"len_{name}", ">i4"), (name, _WIRE[name]))])
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER_FIXED = len(_SIGNATURE) + 8  # signature, flags (int32), extension length (int32)
_TRAILER = b"\xff\xff"
# timestamptz on the wire: microseconds since 2000-01-01 00:00 UTC.
_PG_EPOCH_UNIX_SECONDS = 946_684_800


class CopyFormatError(ValueError):
    """The server's binary COPY stream is not the fixed row layout this module reads."""


@dataclass
class StreamedEvents:
    """The kept events, in (timestamp, id) order; counts of what each filter dropped."""

    user_ids: np.ndarray  # int64
    item_ids: np.ndarray  # int64
    type_pks: np.ndarray  # int64 EventType primary keys
    values: np.ndarray  # float64
    timestamps: np.ndarray  # int64 unix seconds, rounded down
    counts: dict[str, int] = field(default_factory=dict)


def _check_layout(rows: np.ndarray) -> None:
    bad = rows["n_fields"] != len(COLUMNS)
    for name in COLUMNS:
        bad |= rows[f"len_{name}"] != np.dtype(_WIRE[name]).itemsize
    if bad.any():
        raise CopyFormatError("a streamed row is not the fixed layout (a NULL or a wrong type "
                              f"in {COLUMNS})")


class _Chunks:
    """Parses the byte stream chunk by chunk, keeps the unfiltered rows' columns."""

    def __init__(self, filters: dict[str, int], chunk_rows: int) -> None:
        self.filters = filters  # counts key -> flag bit, applied in this order
        self.chunk_bytes = max(1, chunk_rows) * ROW.itemsize
        self.counts = {"events_read": 0, **{f"filtered_{name}": 0 for name in filters}}
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS[:-1]}
        self.buffer = bytearray()
        self.header_done = False

    def feed(self, data) -> None:
        self.buffer += data
        if not self.header_done:
            if len(self.buffer) < _HEADER_FIXED:
                return
            if bytes(self.buffer[:len(_SIGNATURE)]) != _SIGNATURE:
                raise CopyFormatError("not a binary COPY stream")
            extension = int.from_bytes(self.buffer[_HEADER_FIXED - 4:_HEADER_FIXED], "big")
            if len(self.buffer) < _HEADER_FIXED + extension:
                return
            del self.buffer[:_HEADER_FIXED + extension]
            self.header_done = True
        if len(self.buffer) >= self.chunk_bytes:
            self._parse(len(self.buffer) // ROW.itemsize)

    def finish(self) -> None:
        if not self.header_done or not self.buffer.endswith(_TRAILER):
            raise CopyFormatError("the binary COPY stream ended early")
        del self.buffer[-len(_TRAILER):]
        if len(self.buffer) % ROW.itemsize:
            raise CopyFormatError("the binary COPY stream ended inside a row")
        self._parse(len(self.buffer) // ROW.itemsize)

    def _parse(self, n_rows: int) -> None:
        size = n_rows * ROW.itemsize
        rows = np.frombuffer(self.buffer[:size], dtype=ROW)  # a copy: the buffer moves on
        del self.buffer[:size]
        _check_layout(rows)
        self.counts["events_read"] += len(rows)
        flags = rows["flags"]
        keep = np.ones(len(rows), dtype=bool)
        for name, bit in self.filters.items():
            hit = (flags & bit) != 0
            self.counts[f"filtered_{name}"] += int((hit & keep).sum())
            keep &= ~hit
        for name, part in self.parts.items():
            part.append(rows[name][keep].astype(np.float64 if name == "value" else np.int64))

    def column(self, name: str, order: np.ndarray | None = None) -> np.ndarray:
        """One column, all chunks joined (and put in `order`); the chunks are let go."""
        parts = self.parts.pop(name)
        joined = np.concatenate(parts) if parts else np.zeros(
            0, dtype=np.float64 if name == "value" else np.int64)
        parts.clear()
        return joined if order is None else joined[order]


def parse_stream(blocks: Iterable, filters: dict[str, int], chunk_rows: int) -> StreamedEvents:
    """The events of a binary COPY stream (`blocks`: the byte blocks as they arrive) whose
    rows follow COLUMNS; rows with any flag of `filters` (name -> bit) are dropped and counted
    under `filtered_<name>`, the first matching filter counting each row."""
    chunks = _Chunks(filters, chunk_rows)
    for block in blocks:
        chunks.feed(block)
    chunks.finish()
    # (timestamp, id) order: the stamps (microseconds) and ids decide, then every column.
    stamps = chunks.column("timestamp")
    order = np.lexsort((chunks.column("id"), stamps))
    seconds = np.floor_divide(stamps[order], 1_000_000) + _PG_EPOCH_UNIX_SECONDS
    del stamps
    return StreamedEvents(
        user_ids=chunks.column("user_id", order), item_ids=chunks.column("item_id", order),
        type_pks=chunks.column("event_type_id", order), values=chunks.column("value", order),
        timestamps=seconds, counts=chunks.counts)


def copy_events(cursor, select_sql: str, params, filters: dict[str, int],
                chunk_rows: int) -> StreamedEvents:
    """Run `COPY (select_sql) TO STDOUT (FORMAT binary)` on a raw psycopg cursor (the session's
    tenant scope already applied) and parse it chunk by chunk."""
    with cursor.copy(f"COPY ({select_sql}) TO STDOUT (FORMAT binary)", params) as copy:
        return parse_stream(copy, filters, chunk_rows)
