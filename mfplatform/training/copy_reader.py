"""Rows out of Postgres in chunks, straight into numpy arrays (issue #20).

`COPY (SELECT ...) TO STDOUT (FORMAT binary)` on the raw psycopg cursor: the query runs under
the session's row-level security like any SELECT (call tenants.context.apply_scope first: the
raw cursor is past Django's statement hooks). Every column of a RowLayout has a fixed binary
width and none may be NULL, so every row has the same size and a chunk of rows is one
`np.frombuffer` with a structured dtype (big-endian, as on the wire), checked field by field.
No Python object per row ever exists; the bytes held at once are one chunk's.

Measured on 1M events against a server-side cursor with fetchmany into preallocated arrays
(psycopg builds a tuple per row): COPY 3.69 s, the cursor 5.00 s, at the same peak memory
(benchmarks/event_read.py; benchmarks/RESULTS.md, pipeline section).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER_FIXED = len(_SIGNATURE) + 8  # signature, flags (int32), extension length (int32)
_TRAILER = b"\xff\xff"  # a field count of -1


class CopyFormatError(ValueError):
    """The binary COPY stream is not the fixed row layout expected."""


class RowLayout:
    """The SELECT list of a streamed query: column name -> wire type (">i8" bigint or
    timestamptz in microseconds since 2000-01-01 UTC, ">i4" integer, ">i2" smallint, ">f8"
    double precision), in SELECT order, none NULL."""

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns = dict(columns)
        self.dtype = np.dtype([("n_fields", ">i2")] + [
            pair for name, wire in self.columns.items()
            for pair in ((f"len_{name}", ">i4"), (name, wire))])

    def parse(self, raw) -> dict[str, np.ndarray]:
        """Whole rows of the stream -> one native-endian array per column."""
        rows = np.frombuffer(raw, dtype=self.dtype)
        bad = rows["n_fields"] != len(self.columns)
        for name, wire in self.columns.items():
            bad |= rows[f"len_{name}"] != np.dtype(wire).itemsize
        if bad.any():
            raise CopyFormatError(f"a row is not the layout {self.columns} (a NULL, or a "
                                  "column of another type)")
        return {name: rows[name].astype(np.dtype(wire).newbyteorder("="))
                for name, wire in self.columns.items()}


class _Stream:
    """The byte blocks as they arrive -> chunks of at least `chunk_rows` whole rows."""

    def __init__(self, layout: RowLayout, chunk_rows: int) -> None:
        self.layout = layout
        self.row_bytes = layout.dtype.itemsize
        self.chunk_bytes = max(1, int(chunk_rows)) * self.row_bytes
        self.buffer = bytearray()
        self.header_done = False

    def feed(self, block) -> Iterator[dict[str, np.ndarray]]:
        self.buffer += block
        if not self.header_done and not self._skip_header():
            return
        if len(self.buffer) >= self.chunk_bytes:
            yield self._take(len(self.buffer) // self.row_bytes)

    def finish(self) -> Iterator[dict[str, np.ndarray]]:
        if not self.header_done or not self.buffer.endswith(_TRAILER):
            raise CopyFormatError("the binary COPY stream ended early")
        del self.buffer[-len(_TRAILER):]
        if len(self.buffer) % self.row_bytes:
            raise CopyFormatError("the binary COPY stream ended inside a row")
        if self.buffer:
            yield self._take(len(self.buffer) // self.row_bytes)

    def _skip_header(self) -> bool:
        if len(self.buffer) < _HEADER_FIXED:
            return False
        if bytes(self.buffer[:len(_SIGNATURE)]) != _SIGNATURE:
            raise CopyFormatError("not a binary COPY stream")
        extension = int.from_bytes(self.buffer[_HEADER_FIXED - 4:_HEADER_FIXED], "big")
        if len(self.buffer) < _HEADER_FIXED + extension:
            return False
        del self.buffer[:_HEADER_FIXED + extension]
        self.header_done = True
        return True

    def _take(self, n_rows: int) -> dict[str, np.ndarray]:
        size = n_rows * self.row_bytes
        chunk = self.layout.parse(self.buffer[:size])  # the slice is a copy: the buffer moves
        del self.buffer[:size]
        return chunk


def parse_chunks(blocks: Iterable, layout: RowLayout,
                 chunk_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """The columns of a binary COPY stream (`blocks`: its byte blocks in any sizes), a chunk of
    at least `chunk_rows` rows at a time (the last one may be smaller)."""
    stream = _Stream(layout, chunk_rows)
    for block in blocks:
        yield from stream.feed(block)
    yield from stream.finish()


def copy_chunks(cursor, select_sql: str, params, layout: RowLayout,
                chunk_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """`COPY (select_sql) TO STDOUT (FORMAT binary)` on a raw psycopg cursor (parameters bound
    client-side), chunk by chunk. Consume it to the end."""
    with cursor.copy(f"COPY ({select_sql}) TO STDOUT (FORMAT binary)", params) as copy:
        yield from parse_chunks(copy, layout, chunk_rows)


def copy_columns(cursor, select_sql: str, params, layout: RowLayout,
                 chunk_rows: int) -> dict[str, np.ndarray]:
    """All the rows of a (small) query, one array per column."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layout.columns}
    for chunk in copy_chunks(cursor, select_sql, params, layout, chunk_rows):
        for name, column in chunk.items():
            parts[name].append(column)
    return {name: np.concatenate(columns) if columns else np.zeros(0, dtype=np.dtype(
        layout.columns[name]).newbyteorder("=")) for name, columns in parts.items()}
