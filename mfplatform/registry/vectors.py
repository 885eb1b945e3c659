"""Model vectors in pgvector: a partition per model version, its HNSW index, search, drop.

`registry_itemvector` and `registry_uservector` are RANGE-partitioned into blocks of
BLOCK_VERSIONS model version ids, each block LIST-partitioned by model version, so what one
version costs (planning a query, building its index, ANALYZE, attaching, retention) does not
grow with the number of tenants and versions: a statement naming the version id as a constant
prunes to one partition, dropping a version drops its tables, and ATTACH (which reads every
partition bound of the table it attaches to) sees one block's partitions, not all of them.

Vectors of different versions may have different dimensions, so the column stays an untyped
`vector`; each item partition gets one plain HNSW index on `embedding::vector(<dims>)`, which
queries repeat. A partition is built as a table of its own (loaded, indexed, analyzed) and
attached to the parent last: ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on the parent,
so serving other versions never waits for a publication. COPY cannot write into a table with
row-level security, so rows go through a temporary staging table and `INSERT ... SELECT` (the
policy still checks every row). Every partition carries the parent's tenant policy (ENABLE +
FORCE): a partition queried by its own name is walled like the parent.
"""

from __future__ import annotations

import numpy as np
from django.db import connection
from pgvector.psycopg import register_vector

from mfplatform.registry.models import ModelVersion
from tenants.context import apply_scope

PARENTS = {"item": "registry_itemvector", "user": "registry_uservector"}
_ID_COLUMNS = {"item": "item_id", "user": "user_id"}
# Model version ids a block holds (migration 0007): attaching reads one block's bounds; a new
# connection planning through the parent reads the blocks' and one block's.
BLOCK_VERSIONS = 100


def partition_name(kind: str, model_version_id: int) -> str:
    return f"{PARENTS[kind]}_v{int(model_version_id)}"


def block_name(kind: str, model_version_id: int) -> str:
    return f"{PARENTS[kind]}_b{int(model_version_id) // BLOCK_VERSIONS * BLOCK_VERSIONS}"


def index_name(model_version_id: int) -> str:
    return f"{partition_name('item', model_version_id)}_hnsw"


def raw_connection():
    """Django's psycopg connection, in the running code's tenant scope, with pgvector's
    types registered (numpy arrays go over as vectors)."""
    apply_scope(connection)
    raw = connection.connection
    if not getattr(raw, "_mf_vector_registered", False):
        register_vector(raw)
        raw._mf_vector_registered = True
    return raw


def create_partition_table(cursor, kind: str, model_version_id: int) -> str:
    """A detached table shaped like the parent, with the parent's tenant policy, and the
    CHECK that lets ATTACH skip scanning it for the partition bound. Returns its name."""
    parent, table = PARENTS[kind], partition_name(kind, model_version_id)
    cursor.execute(f"CREATE TABLE {table} (LIKE {parent} INCLUDING DEFAULTS, "
                   f"CONSTRAINT {table}_bound CHECK (model_version_id = "
                   f"{int(model_version_id)}))")
    copy_tenant_policy(cursor, parent, table)
    return table


def copy_tenant_policy(cursor, parent: str, table: str) -> None:
    """Row-level security on `table` exactly as on `parent` (ENABLE, FORCE and every policy,
    copied from the catalogue so a change to the parent's policy reaches new partitions)."""
    cursor.execute("SELECT policyname, permissive, cmd, qual, with_check FROM pg_policies "
                   "WHERE schemaname = current_schema() AND tablename = %s", [parent])
    policies = cursor.fetchall()
    if not policies:
        raise RuntimeError(f"{parent} has no row-level security policy to copy")
    cursor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    cursor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    for name, permissive, command, using, check in policies:
        statement = f'CREATE POLICY "{name}" ON {table} AS {permissive} FOR {command}'
        if using is not None:
            statement += f" USING ({using})"
        if check is not None:
            statement += f" WITH CHECK ({check})"
        cursor.execute(statement)


def attach_partition(cursor, kind: str, model_version_id: int) -> None:
    """Attach to the version's block (made first if it is the block's first version), then
    drop the CHECK: the partition bound says the same from now on."""
    block, table = ensure_block(cursor, kind, model_version_id), partition_name(
        kind, model_version_id)
    cursor.execute(f"ALTER TABLE {block} ATTACH PARTITION {table} "
                   f"FOR VALUES IN ({int(model_version_id)})")
    cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_bound")


def ensure_block(cursor, kind: str, model_version_id: int) -> str:
    """The block of the version's id, created and attached to the parent when missing, with
    the parent's tenant policy (a block queried by its own name is walled too). A
    transaction-level advisory lock on the block's name makes a concurrent publication into
    the same new block wait for this one's commit and then find the block."""
    parent, block = PARENTS[kind], block_name(kind, model_version_id)
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [block])
    cursor.execute("SELECT to_regclass(%s)", [block])
    if cursor.fetchone()[0] is None:
        low = int(model_version_id) // BLOCK_VERSIONS * BLOCK_VERSIONS
        cursor.execute(f"CREATE TABLE {block} (LIKE {parent} INCLUDING DEFAULTS) "
                       f"PARTITION BY LIST (model_version_id)")
        copy_tenant_policy(cursor, parent, block)
        cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {block} "
                       f"FOR VALUES FROM ({low}) TO ({low + BLOCK_VERSIONS})")
    return block


def create_item_hnsw_index(cursor, model_version_id: int, dims: int) -> None:
    # Building HNSW is memory-hungry; a larger budget keeps the graph in memory.
    cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
    cursor.execute("SET LOCAL max_parallel_maintenance_workers = 1")
    cursor.execute(f"CREATE INDEX {index_name(model_version_id)} "
                   f"ON {partition_name('item', model_version_id)} "
                   f"USING hnsw ((embedding::vector({int(dims)})) vector_ip_ops)")


# PostgreSQL's binary COPY: a header, per row the number of fields and each field as its
# length and big-endian bytes, then -1. pgvector's binary value: int16 dimensions, int16 0,
# the float4s.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_BINARY_TRAILER = b"\xff\xff"
_COPY_CHUNK_ROWS = 65536


def copy_vector_rows(copy, ids: np.ndarray, vectors: np.ndarray) -> None:
    """(id, vector) rows into a binary COPY, built in numpy a chunk at a time: a row object per
    vector took ~20 s for 750k user vectors."""
    dims = vectors.shape[1]
    row = np.dtype([("fields", ">i2"), ("ref_len", ">i4"), ("ref", ">i8"), ("vec_len", ">i4"),
                    ("dims", ">i2"), ("unused", ">i2"), ("values", ">f4", (dims,))])
    copy.write(_BINARY_HEADER)
    for start in range(0, len(ids), _COPY_CHUNK_ROWS):
        stop = min(start + _COPY_CHUNK_ROWS, len(ids))
        rows = np.zeros(stop - start, dtype=row)
        rows["fields"], rows["ref_len"], rows["vec_len"], rows["dims"] = 2, 8, 4 + 4 * dims, dims
        rows["ref"] = ids[start:stop]
        rows["values"] = vectors[start:stop]
        copy.write(rows.tobytes())
    copy.write(_BINARY_TRAILER)


def write_vectors(model_version: ModelVersion, kind: str, ids: np.ndarray,
                  vectors: np.ndarray) -> int:
    """Load one vector per id (item or user primary keys) into the version's own partition,
    created here. User vectors are attached at once; item vectors when their index is built
    (`create_item_index`). Runs in the caller's transaction: a failure leaves nothing."""
    if not connection.in_atomic_block:
        raise RuntimeError("write_vectors must run inside transaction.atomic()")
    id_column = _ID_COLUMNS[kind]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != len(vectors):
        raise ValueError("one vector per id")
    raw = raw_connection()
    with raw.cursor() as cursor:
        table = create_partition_table(cursor, kind, model_version.pk)
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging_{kind}_vectors "
                       f"(ref bigint, embedding vector) ON COMMIT DROP")
        cursor.execute(f"TRUNCATE staging_{kind}_vectors")
        with cursor.copy(f"COPY staging_{kind}_vectors (ref, embedding) FROM STDIN "
                         f"WITH (FORMAT BINARY)") as copy:
            copy_vector_rows(copy, ids, vectors)
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, model_version_id, {id_column}, embedding) "
            f"SELECT %s, %s, ref, embedding FROM staging_{kind}_vectors",
            [model_version.tenant_id, model_version.pk])
        written = cursor.rowcount
        if kind == "user":
            cursor.execute(f"ANALYZE {table}")
            attach_partition(cursor, kind, model_version.pk)
        return written


def create_item_index(model_version: ModelVersion) -> None:
    """HNSW inner-product index on the version's item partition, fresh statistics for that
    partition only, then the partition joins the parent where serving finds it."""
    raw = raw_connection()
    with raw.cursor() as cursor:
        create_item_hnsw_index(cursor, model_version.pk, model_version.dimensions)
        # Without statistics the planner believes the partition is empty and scans it.
        cursor.execute(f"ANALYZE {partition_name('item', model_version.pk)}")
        attach_partition(cursor, "item", model_version.pk)


def add_cold_item_vectors(model_version: ModelVersion, ids: np.ndarray, vectors: np.ndarray,
                          placements: list[str]) -> int:
    """Add vectors of items the version was not trained on to its attached partition, flagged
    cold with their placement; the HNSW index takes them in as they are inserted. An item
    that has a vector already keeps it. Runs in the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("add_cold_item_vectors must run inside transaction.atomic()")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if not (len(ids) == len(vectors) == len(placements)):
        raise ValueError("one vector and one placement per id")
    raw = raw_connection()
    with raw.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS staging_cold_vectors "
                       "(ref bigint, embedding vector, placement text) ON COMMIT DROP")
        cursor.execute("TRUNCATE staging_cold_vectors")
        with cursor.copy("COPY staging_cold_vectors (ref, embedding, placement) FROM STDIN "
                         "WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector", "text"])
            for ref, vector, placement in zip(ids.tolist(), vectors, placements, strict=True):
                copy.write_row((ref, vector, placement))
        cursor.execute(
            f"INSERT INTO {partition_name('item', model_version.pk)} (tenant_id, "
            f"model_version_id, item_id, embedding, cold, cold_placement) "
            f"SELECT %s, %s, ref, embedding, true, placement FROM staging_cold_vectors "
            f"ON CONFLICT (item_id, model_version_id) DO NOTHING",
            [model_version.tenant_id, model_version.pk])
        return cursor.rowcount


def drop_vectors(model_version: ModelVersion) -> None:
    """Drop the version's partitions (rows and index go with them), and their block when it
    has no partition left (a later version in its range makes it again)."""
    with connection.cursor() as cursor:
        for kind in PARENTS:
            cursor.execute(f"DROP TABLE IF EXISTS {partition_name(kind, model_version.pk)}")
            block = block_name(kind, model_version.pk)
            # ensure_block's lock: a publication into this block commits its partition first.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [block])
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL AND NOT EXISTS (SELECT FROM "
                           "pg_inherits WHERE inhparent = to_regclass(%s))", [block, block])
            if cursor.fetchone()[0]:
                cursor.execute(f"DROP TABLE {block}")


def nearest_items(model_version: ModelVersion, query: np.ndarray, limit: int,
                  ef_search: int | None = None) -> list[tuple[int, float]]:
    """(item primary key, inner product) best first, through the version's HNSW index, read
    from the version's partition by name (planning opens that one table only)."""
    dims, version_id = int(model_version.dimensions), int(model_version.pk)
    raw = raw_connection()
    with raw.cursor() as cursor:
        if ef_search:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        cursor.execute(
            f"SELECT item_id, -(embedding::vector({dims}) <#> %s::vector({dims})) "
            f"FROM {partition_name('item', version_id)} "
            f"ORDER BY embedding::vector({dims}) <#> %s::vector({dims}) LIMIT %s",
            [np.asarray(query, np.float32), np.asarray(query, np.float32), int(limit)])
        return cursor.fetchall()


def vector_array(vector) -> np.ndarray | None:
    """pgvector's value (a numpy array, or its Vector type, by how psycopg read it)."""
    if vector is None:
        return None
    if hasattr(vector, "to_numpy"):
        vector = vector.to_numpy()
    return np.asarray(vector, dtype=np.float32)


def cold_item_vectors(model_version: ModelVersion) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(item pks, vectors, placements) of the new items placed in the version by their
    content (registry.cold), in item order; empty when there are none."""
    raw = raw_connection()
    with raw.cursor() as cursor:
        cursor.execute(
            f"SELECT item_id, embedding, cold_placement FROM "
            f"{partition_name('item', model_version.pk)} WHERE cold ORDER BY item_id")
        rows = cursor.fetchall()
    width = int(model_version.dimensions)
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, width), np.float32), []
    vectors = np.vstack([vector_array(row[1]) for row in rows])
    return (np.array([row[0] for row in rows], dtype=np.int64), vectors,
            [row[2] for row in rows])
