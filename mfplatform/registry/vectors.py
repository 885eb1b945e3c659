"""Model vectors in pgvector: bulk publication, the per-version HNSW index, search, drop.

Vectors of different model versions may have different dimensions, so they share one untyped
`vector` column and each version gets a partial HNSW index on `embedding::vector(<dims>)`
restricted to its rows; queries repeat the same cast and WHERE so the planner uses it.
COPY cannot write into a table with row-level security, so rows go through a temporary
staging table and `INSERT ... SELECT` (the policy still checks every row).
"""

from __future__ import annotations

import numpy as np
from django.db import connection
from pgvector.psycopg import register_vector

from mfplatform.registry.models import ModelVersion
from tenants.context import apply_scope

_TABLES = {"item": ("registry_itemvector", "item_id"), "user": ("registry_uservector", "user_id")}


def raw_connection():
    """Django's psycopg connection, in the running code's tenant scope, with pgvector's
    types registered (numpy arrays go over as vectors)."""
    apply_scope(connection)
    raw = connection.connection
    if not getattr(raw, "_mf_vector_registered", False):
        register_vector(raw)
        raw._mf_vector_registered = True
    return raw


def write_vectors(model_version: ModelVersion, kind: str, ids: np.ndarray,
                  vectors: np.ndarray) -> int:
    """Insert one vector per id (item or user primary keys) for the model version. Runs in
    the caller's transaction: a failure leaves nothing half-written."""
    if not connection.in_atomic_block:
        raise RuntimeError("write_vectors must run inside transaction.atomic()")
    table, id_column = _TABLES[kind]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != len(vectors):
        raise ValueError("one vector per id")
    raw = raw_connection()
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging_{kind}_vectors "
                       f"(ref bigint, embedding vector) ON COMMIT DROP")
        cursor.execute(f"TRUNCATE staging_{kind}_vectors")
        with cursor.copy(f"COPY staging_{kind}_vectors (ref, embedding) FROM STDIN "
                         f"WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for ref, vector in zip(ids.tolist(), vectors, strict=True):
                copy.write_row((ref, vector))
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, model_version_id, {id_column}, embedding) "
            f"SELECT %s, %s, ref, embedding FROM staging_{kind}_vectors",
            [model_version.tenant_id, model_version.pk])
        return cursor.rowcount


def create_item_index(model_version: ModelVersion) -> None:
    """HNSW inner-product index over this version's item vectors only."""
    dims = int(model_version.dimensions)
    with connection.cursor() as cursor:
        # Django's foreign keys are deferred; CREATE INDEX refuses to run while their checks
        # for the rows just written are pending, so run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Building HNSW is memory-hungry; a larger budget keeps the graph in memory.
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL max_parallel_maintenance_workers = 1")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {model_version.index_name} ON registry_itemvector "
            f"USING hnsw ((embedding::vector({dims})) vector_ip_ops) "
            f"WHERE model_version_id = {int(model_version.pk)}")
        # Fresh statistics, or the planner still believes the table is empty and scans it.
        cursor.execute("ANALYZE registry_itemvector")


def drop_vectors(model_version: ModelVersion) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {model_version.index_name}")
        cursor.execute("DELETE FROM registry_itemvector WHERE model_version_id = %s",
                       [model_version.pk])
        cursor.execute("DELETE FROM registry_uservector WHERE model_version_id = %s",
                       [model_version.pk])


def nearest_items(model_version: ModelVersion, query: np.ndarray, limit: int,
                  ef_search: int | None = None) -> list[tuple[int, float]]:
    """(item primary key, inner product) best first, through the version's HNSW index."""
    dims = int(model_version.dimensions)
    raw = raw_connection()
    with raw.cursor() as cursor:
        if ef_search:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        cursor.execute(
            f"SELECT item_id, -(embedding::vector({dims}) <#> %s::vector({dims})) "
            f"FROM registry_itemvector WHERE model_version_id = %s "
            f"ORDER BY embedding::vector({dims}) <#> %s::vector({dims}) LIMIT %s",
            [np.asarray(query, np.float32), model_version.pk,
             np.asarray(query, np.float32), int(limit)])
        return cursor.fetchall()
