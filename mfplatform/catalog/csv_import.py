"""Streaming CSV import for the management commands and the admin's import jobs: map columns,
validate and write in chunks through the same services as the REST endpoints, all-or-nothing
by default."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from queue import Full, Queue
from typing import IO, Any

from django.db import transaction
from tqdm import tqdm

from mfplatform.catalog.event_validation import EVENT_FIELDS, EventColumns
from mfplatform.catalog.events import ensure_default_event_types, ingest_events, prepare_events
from mfplatform.catalog.ingest import IngestResult, RowError, upsert_items

CHUNK = 20_000  # rows per batch written (the REST limit is for requests)
# A file on this machine (the import commands) or an opened binary stream (an import job's
# upload, read through the storage API from wherever the storage keeps it).
CsvSource = Path | IO[bytes]
ITEM_COLUMNS = {"item", "title", "category", "tags"}


class ImportFailed(Exception):
    def __init__(self, summary: ImportSummary):
        super().__init__(f"{summary.rejected_rows} invalid rows; nothing was stored")
        self.summary = summary


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: IngestResult) -> None:
        self.created += result.created
        self.updated += result.updated
        self.duplicates += result.duplicates
        self.errors.extend(result.rejected)

    @property
    def rejected_rows(self) -> int:
        """Rows with at least one error (a row can have several)."""
        return len({error.index for error in self.errors})

    def lines(self, limit: int = 20) -> list[str]:
        rate = f" ({self.rows / self.seconds:,.0f} rows/s)" if self.seconds > 0 else ""
        out = [f"rows read {self.rows:,}; created {self.created:,}; updated {self.updated:,}; "
               f"duplicates {self.duplicates:,}; rejected {self.rejected_rows:,}; "
               f"{self.seconds:.2f} s{rate}"]
        out += [f"  row {e.index}: {e.field or '(row)'}: {e.error}" for e in self.errors[:limit]]
        if len(self.errors) > limit:
            out.append(f"  ... and {len(self.errors) - limit} more")
        return out


def parse_mapping(text: str, allowed: set[str]) -> dict[str, str]:
    """'user=userId,item=movieId' -> {"user": "userId", "item": "movieId"}."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        target, sep, column = part.partition("=")
        if not sep or not column or target not in allowed:
            raise ValueError(f"bad mapping {part!r}: expected <field>=<csv column> with field "
                             f"one of {', '.join(sorted(allowed))}")
        mapping[target] = column
    return mapping


@dataclass
class Chunk:
    """Rows of a CSV file, column by column: `lines` holds each row's line number (the header
    is line 1), `columns` each mapped field's cells."""

    lines: list[int]
    columns: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.lines)

    def rows(self) -> list[dict[str, str]]:
        names = list(self.columns)
        return [dict(zip(names, cells, strict=True))
                for cells in zip(*self.columns.values(), strict=True)]


def source_name(source: CsvSource) -> str:
    return Path(getattr(source, "name", "") or "upload.csv").name


@contextmanager
def _open_text(source: CsvSource) -> Iterator[IO[str]]:
    if isinstance(source, Path):
        with open(source, newline="", encoding="utf-8-sig") as handle:
            yield handle
        return
    handle = io.TextIOWrapper(source, newline="", encoding="utf-8-sig")
    try:
        yield handle
    finally:
        handle.detach()  # the stream is the caller's to close


def read_chunks(source: CsvSource, mapping: dict[str, str], size: int = CHUNK,
                errors: list[RowError] | None = None) -> Iterator[Chunk]:
    """The file in chunks of `size` rows; blank lines are skipped, short rows padded with
    empty cells (which then fail validation as missing values). A row the csv module cannot
    read (a field over its size limit) or holding a NUL character is left out and reported in
    `errors`. A UTF-8 byte order mark before the header is dropped."""
    errors = [] if errors is None else errors
    with _open_text(source) as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [c for c in mapping.values() if c not in header]
        if missing:
            raise ValueError(f"{source_name(source)} has no column(s) {missing}; it has {header}")
        positions = {target: header.index(column) for target, column in mapping.items()}
        width = max(positions.values()) + 1
        numbered = _numbered_rows(reader, errors)
        while True:
            batch = list(islice(numbered, size))
            if not batch:
                return
            lines, rows = (list(x) for x in zip(*batch, strict=True))
            if "\x00" in "".join(map("".join, rows)):  # rare: find the rows one by one
                kept = [(n, row) for n, row in batch if not _has_nul(n, row, errors)]
                if not kept:
                    continue
                lines, rows = (list(x) for x in zip(*kept, strict=True))
            yield _chunk(lines, rows, positions, width)


def _numbered_rows(reader, errors: list[RowError]) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each non-blank row; the header is line 1."""
    line = 1
    while True:
        line += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
            errors.append(RowError(line, "", f"unreadable CSV row: {exc}"))
            continue
        if row:
            yield line, row


def _has_nul(line: int, row: list[str], errors: list[RowError]) -> bool:
    for position, cell in enumerate(row):
        if "\x00" in cell:
            errors.append(RowError(line, f"column {position + 1}",
                                   "contains a NUL character"))
            return True
    return False


def _chunk(lines: list[int], rows: list[list[str]], positions: dict[str, int],
           width: int) -> Chunk:
    if min(map(len, rows)) < width:
        rows = [row + [""] * (width - len(row)) for row in rows]
    return Chunk(lines, {target: [row[p] for row in rows] for target, p in positions.items()})


def prefetch(chunks: Iterator, depth: int = 2) -> Iterator:
    """Read the next chunks in a thread while the current one is written: parsing runs on one
    core while the database works on the other (psycopg releases the GIL while it waits).
    The reading thread never touches the database; its errors are raised here."""
    queue: Queue = Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False  # the consumer has gone

    def read() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    reader = threading.Thread(target=read, name="csv-prefetch", daemon=True)
    reader.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def run_import(source: CsvSource, mapping: dict[str, str],
               write: Callable[[Any, bool], IngestResult], partial: bool,
               progress: bool = True, chunk_size: int | None = None,
               prepare: Callable[[Chunk], Any] | None = None,
               on_chunk: Callable[[ImportSummary], None] | None = None) -> ImportSummary:
    """Every chunk is validated and written inside one transaction; without `partial`, any
    bad row rolls the whole file back (and every bad row is still reported). `prepare` (no
    database access) runs on each chunk in the reading thread; `write` gets its result.
    `on_chunk` sees the running counts after each chunk; what it raises rolls back."""
    summary = ImportSummary()
    started = time.perf_counter()
    # disable=None: the bar only on a terminal, never in logs.
    with transaction.atomic(), tqdm(unit=" rows", unit_scale=True, desc=source_name(source),
                                    disable=None if progress else True) as bar:
        failed = False
        unreadable: list[RowError] = []  # filled by the reading thread
        chunks = read_chunks(source, mapping, chunk_size or CHUNK, errors=unreadable)
        for chunk in prefetch(map(prepare, chunks) if prepare else chunks):
            summary.rows += len(chunk)
            # After a bad row the file is lost anyway; go on validating to report every one.
            result = write(chunk, partial or failed or bool(unreadable))
            if result.rejected and not partial:
                failed = True
            summary.add(result)
            bar.update(len(chunk))
            if on_chunk is not None:
                on_chunk(summary)
        if unreadable:
            summary.rows += len(unreadable)
            summary.errors = sorted([*summary.errors, *unreadable], key=lambda e: e.index)
            failed = failed or not partial
        if failed:
            transaction.set_rollback(True)
            summary.created = summary.updated = summary.duplicates = 0
            summary.seconds = time.perf_counter() - started
            raise ImportFailed(summary)
    summary.seconds = time.perf_counter() - started  # with the commit
    return summary


def import_for_command(command, slug: str, path: Path, mapping: dict[str, str],
                       write_for_tenant, partial: bool, progress: bool) -> None:
    """The import commands' shared part: resolve the tenant, run in its context, report.
    `write_for_tenant(tenant)` returns the (write, prepare) pair of run_import."""
    from django.core.management.base import CommandError

    from tenants.context import tenant_context
    from tenants.models import Tenant

    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"no tenant {slug!r}")
    if not path.exists():
        raise CommandError(f"no file {path}")
    with tenant_context(tenant):
        try:
            write, prepare = write_for_tenant(tenant)
            summary = run_import(path, mapping, write, partial, progress=progress,
                                 prepare=prepare)
        except ImportFailed as failed:
            for line in failed.summary.lines():
                command.stderr.write(line)
            raise CommandError(str(failed)) from None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    for line in summary.lines():
        command.stdout.write(line)


def item_writer(tenant, tags_sep: str = "|"):
    """(write, prepare) of run_import for items: `category` keeps the first of several values
    separated by `tags_sep`, `tags` are split by it."""
    def convert(row: dict) -> dict:
        item = {"external_id": row["item"]}
        if "title" in row:
            item["title"] = row["title"]
        if "category" in row:
            item["category"] = row["category"].split(tags_sep)[0] if tags_sep else \
                row["category"]
        if "tags" in row:
            item["tags"] = [t for t in row["tags"].split(tags_sep) if t] if tags_sep \
                else [row["tags"]]
        return item

    def write(chunk, partial_chunk):
        result = upsert_items(tenant, [convert(row) for row in chunk.rows()],
                              partial=partial_chunk)
        for error in result.rejected:  # report file line numbers, not positions
            error.index = chunk.lines[error.index]
        return result
    return write, None


def event_writer(tenant, default_type: str | None, create_items: bool = False):
    """(write, prepare) of run_import for events; `prepare` runs in the reading thread."""
    types = ensure_default_event_types(tenant)

    def prepare(chunk):  # no database here
        columns = EventColumns(index=chunk.lines, **{
            name: chunk.columns.get(name) for name in EVENT_FIELDS})
        return prepare_events(columns, types, default_type=default_type)

    def write(prepared, partial_chunk):
        return ingest_events(tenant, prepared, partial=partial_chunk,
                             allow_placeholders=create_items or None)
    return write, prepare
