"""Impressions, recorded off the request's critical path.

A request appends one tuple to this process's buffer (a lock and a list append): the row as
COPY will write it, of strings, numbers and a datetime only, so that the garbage collector
stops tracking it at its first pass and the rows waiting for a write never push it into
extra full collections (a row of lists, a UUID and a dataclass was five tracked objects that
lived into the oldest generation); a background
thread writes the buffer every IMPRESSION_FLUSH_SECONDS, or as soon as IMPRESSION_FLUSH_ROWS
rows wait, with one COPY into a temporary staging table and one INSERT ... SELECT of every
tenant's rows (COPY cannot write into a table with row-level security; see write_rows for
why the INSERT runs under the narrow bypass). The buffer is written at interpreter exit
(atexit) and by gunicorn's worker_exit hook; a process that dies without either (SIGKILL, a
crash) loses at most what arrived since the last write: IMPRESSION_FLUSH_SECONDS' worth. More
than IMPRESSION_BUFFER_ROWS waiting (the database is down or slow) are dropped and counted,
so a stalled database never grows a web process's memory without bound.
"""

from __future__ import annotations

import atexit
import functools
import logging
import operator
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from mfplatform.experiments import metrics
from tenants.context import apply_scope, rls_bypass

log = logging.getLogger(__name__)


@dataclass
class ImpressionRow:
    """One response as shown. The order of the fields is the staging table's."""

    tenant_id: int
    recommendation_id: uuid.UUID
    surface: str
    user_external_id: str
    user_id: int | None
    items: list[int]
    sources: list[str]
    model_version_id: int | None
    experiment_id: int | None
    variant: str
    latency_ms: float
    fallback: bool
    created_at: datetime = field(default_factory=timezone.now)


COLUMNS = ("tenant_id", "recommendation_id", "surface", "user_external_id", "user_id", "items",
           "sources", "model_version_id", "experiment_id", "variant", "latency_ms", "fallback",
           "created_at")
# The row's values in COLUMNS order, as they are: dataclasses.astuple deep-copies every
# list, UUID and datetime, which was two thirds of a flush's CPU (0.36 of 0.56 s for 300 rows).
_row_values = operator.attrgetter(*COLUMNS)
_ITEMS, _SOURCES = COLUMNS.index("items"), COLUMNS.index("sources")


_RECOMMENDATION_ID, _SURFACE = COLUMNS.index("recommendation_id"), COLUMNS.index("surface")


def copy_values(row: ImpressionRow) -> tuple:
    """The row for COPY, its id as text and its two arrays as literals: psycopg's list dumper
    (pure Python, a regular expression per element) was 90% of a flush's CPU (7.6 of 8.4 ms
    for 75 rows of 20 items)."""
    values = list(_row_values(row))
    values[_RECOMMENDATION_ID] = str(values[_RECOMMENDATION_ID])
    values[_ITEMS] = "{" + ",".join(map(str, values[_ITEMS])) + "}"
    values[_SOURCES] = "{" + ",".join(map(_array_element, values[_SOURCES])) + "}"
    return tuple(values)


@functools.lru_cache(maxsize=1024)  # sources are a handful of names
def _array_element(text: str) -> str:
    """`text` as an element of an array literal: always quoted, so any text is safe."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_STAGING = """CREATE TEMP TABLE IF NOT EXISTS staging_impressions (
    tenant_id bigint, recommendation_id uuid, surface text, user_external_id text,
    user_id bigint, items bigint[], sources text[], model_version_id bigint,
    experiment_id bigint, variant text, latency_ms float8, fallback boolean,
    created_at timestamptz) ON COMMIT DELETE ROWS"""


def write_rows(rows: list[tuple]) -> int:
    """Write rows (copy_values' tuples) of any tenants in one transaction, one COPY and one
    INSERT prepared once per session; returns the rows written.

    Under the narrow bypass, as retention deletes: each row's tenant is the one its request's
    API key resolved to, and a scope per tenant would be set from that same tenant_id, so the
    policy could not refuse anything the bypass lets through. It cost a set_config and an
    INSERT per tenant in the batch: traffic over many tenants puts a few rows of each in a
    batch, and a 75-row flush over 60 tenants took 13 ms of Python and 10 of Postgres that
    way, 3 and 4 this way (as for one tenant)."""
    if not rows:
        return 0
    names = ", ".join(COLUMNS)
    with rls_bypass(), transaction.atomic(), connection.cursor() as django_cursor:
        apply_scope(connection)  # the cursors below are psycopg's own (COPY)
        cursor = django_cursor.cursor
        # The session keeps the staging table (emptied at every commit), so the prepared
        # INSERT below stays planned against it (a TRUNCATE would make it plan again). The
        # DELETE finds rows only when this runs inside an outer transaction (tests).
        cursor.execute(_STAGING)
        cursor.execute("DELETE FROM staging_impressions")
        with cursor.copy(f"COPY staging_impressions ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        with psycopg.Cursor(connection.connection) as insert:  # Django's binds client-side
            insert.execute(f"INSERT INTO experiments_impression ({names}) "
                           f"SELECT {names} FROM staging_impressions", prepare=True)
    return len(rows)


class ImpressionBuffer:
    """The process's buffer and its writer thread (started on the first row)."""

    def __init__(self):
        self._rows: list[tuple] = []  # copy_values' tuples
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one write at a time (thread, exit, a test)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._exit_registered = False

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: ImpressionRow) -> None:
        values = copy_values(row)
        with self._lock:
            if len(self._rows) >= settings.IMPRESSION_BUFFER_ROWS:
                metrics.DROPPED.labels("buffer_full").inc()
                return
            self._rows.append(values)
            waiting = len(self._rows)
            if not self._exit_registered:
                self._exit_registered = True
                atexit.register(self.close)
        if settings.IMPRESSION_BACKGROUND_FLUSH:
            self._ensure_thread()
            if waiting >= settings.IMPRESSION_FLUSH_ROWS:
                self._wake.set()

    def flush(self) -> int:
        """Write what waits now, in the calling thread; returns the rows written."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                written = write_rows(rows)
            except Exception:  # noqa: BLE001 - the writer must outlive a failed write
                log.exception("impressions: %d rows could not be written, dropped", len(rows))
                metrics.DROPPED.labels("write_failed").inc(len(rows))
                return 0
            for surface, count in Counter(row[_SURFACE] for row in rows).items():
                metrics.WRITTEN.labels(surface).inc(count)
            return written

    def discard(self) -> int:
        """Forget what waits (tests: rows of a rolled-back test must not reach the next)."""
        with self._lock:
            rows, self._rows = self._rows, []
        return len(rows)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="impression-writer",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from django.db import connections

        try:
            while not self._stopping:
                self._wake.wait(settings.IMPRESSION_FLUSH_SECONDS)
                self._wake.clear()
                self.flush()
        finally:
            connections.close_all()  # this thread's own connection

    def close(self) -> None:
        """At exit: stop the thread and write the rest."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


BUFFER = ImpressionBuffer()


def record(row: ImpressionRow) -> None:
    """Queue one response's impression (nothing when IMPRESSION_LOGGING is off)."""
    if settings.IMPRESSION_LOGGING:
        BUFFER.add(row)


def flush_impressions() -> int:
    return BUFFER.flush()


def drop_old_impressions(days: int | None = None, batch: int = 10000) -> int:
    """Delete impressions older than the retention (IMPRESSION_RETENTION_DAYS) in batches of
    `batch` rows, every tenant's (a platform-wide policy: the narrow bypass)."""
    days = settings.IMPRESSION_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    while True:
        with rls_bypass(), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM experiments_impression WHERE id IN (SELECT id FROM "
                           "experiments_impression WHERE created_at < %s LIMIT %s)",
                           [cutoff, batch])
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted
