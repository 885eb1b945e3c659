"""Vector storage: one partition per model version, walled by row-level security like the
parent, pruned to by the serving query, dropped whole by retention."""

import numpy as np
import pytest
from django.db import DatabaseError, connection, transaction

from mfplatform.catalog.models import Item
from mfplatform.registry import vectors
from mfplatform.registry.services import apply_retention, promote
from mfplatform.registry.vectors import (
    block_name,
    index_name,
    nearest_items,
    partition_name,
    raw_connection,
)
from mfplatform.serving.candidates import candidate_sql
from tests.factories import load_synthetic, make_model_version, make_plan, synthetic
from tests.registry.test_retention import publish

pytestmark = pytest.mark.django_db


def _partitions_of(parent: str) -> set[str]:
    """The version partitions under the parent (in their blocks)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) "
                       "WHERE isleaf", [parent])
        return {row[0] for row in cursor.fetchall()}


def _row_security(table: str) -> tuple[bool, bool, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relrowsecurity, c.relforcerowsecurity, "
                       "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
                       "FROM pg_class c WHERE c.relname = %s", [table])
        return cursor.fetchone()


def _published(tenant_fixture, name: str):
    with tenant_fixture.scope():
        load_synthetic(tenant_fixture.tenant, synthetic(n_users=20, n_items=15,
                                                        n_interactions=120))
        plan = make_plan(tenant_fixture.tenant, name, promotion={"auto_promote": False})
        return plan, publish(make_model_version(plan))


def test_each_version_has_its_own_partitions_with_row_level_security(tenant_a, tenant_b):
    _, version_a = _published(tenant_a, "main")
    _, version_b = _published(tenant_b, "main")
    for version in (version_a, version_b):
        assert partition_name("item", version.pk) in _partitions_of("registry_itemvector")
        assert partition_name("user", version.pk) in _partitions_of("registry_uservector")
        for kind in ("item", "user"):
            assert _row_security(partition_name(kind, version.pk)) == (True, True, 1)
            assert _row_security(block_name(kind, version.pk)) == (True, True, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                       [index_name(version_a.pk)])
        definition = cursor.fetchone()[0]
    assert partition_name("item", version_a.pk) in definition
    assert "hnsw" in definition and "vector_ip_ops" in definition and "WHERE" not in definition


def test_a_partition_named_directly_shows_no_other_tenants_rows(tenant_a, tenant_b):
    _, version_a = _published(tenant_a, "main")
    _published(tenant_b, "main")
    for kind in ("item", "user"):
        table = partition_name(kind, version_a.pk)
        with tenant_a.scope(), connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            assert cursor.fetchone()[0] == 15 if kind == "item" else 20
        with tenant_b.scope(), connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            assert cursor.fetchone()[0] == 0
        # No tenant at all: no rows either (the policy fails closed).
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            assert cursor.fetchone()[0] == 0


def test_a_foreign_tenants_row_cannot_be_written_into_a_partition(tenant_a, tenant_b):
    _, version_a = _published(tenant_a, "main")
    with tenant_a.scope():
        item = Item.objects.filter(tenant=tenant_a.tenant).first()
    table = partition_name("item", version_a.pk)
    for target in (table, "registry_itemvector"):
        with tenant_b.scope(), pytest.raises(DatabaseError, match="row-level security"), \
                transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {target} (tenant_id, model_version_id, item_id, "
                           f"embedding) VALUES (%s, %s, %s, '[1,2,3,4]')",
                           [tenant_a.tenant.pk, version_a.pk, item.pk])
    with tenant_a.scope(), connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone()[0] == 15


def test_the_candidate_query_plans_one_partition_through_its_index(tenant_a):
    plan, version = _published(tenant_a, "main")
    with tenant_a.scope():
        others = [publish(make_model_version(plan)) for _ in range(2)]
        query = np.ones(version.dimensions, np.float32)
        raw = raw_connection()
        with transaction.atomic(), raw.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # 15 rows: force the index
            cursor.execute("EXPLAIN " + candidate_sql(version, 10),
                           {"query": query, "head": "{}", "scores": "{}"})
            plan_text = "\n".join(row[0] for row in cursor.fetchall())
        assert index_name(version.pk) in plan_text
        assert partition_name("item", version.pk) in plan_text
        for other in others:
            assert partition_name("item", other.pk) not in plan_text
        # And the search itself answers from that partition.
        found = nearest_items(version, query, 5)
        assert len(found) == 5


def test_retention_drops_the_partitions(tenant_a):
    plan, v1 = _published(tenant_a, "main")
    with tenant_a.scope():
        v2, v3 = (publish(make_model_version(plan)) for _ in range(2))
        promote(v3, actor="test", reason="newest")
        assert {v.pk for v in apply_retention(plan, keep=1)} == {v1.pk, v2.pk}
    items, users = _partitions_of("registry_itemvector"), _partitions_of("registry_uservector")
    for dropped in (v1, v2):
        assert partition_name("item", dropped.pk) not in items
        assert partition_name("user", dropped.pk) not in users
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [partition_name("item", dropped.pk)])
            assert cursor.fetchone()[0] is None  # dropped, not only detached
    assert partition_name("item", v3.pk) in items and partition_name("user", v3.pk) in users


def test_written_vectors_read_back_exactly_with_their_ids(tenant_a):
    # The binary COPY is built in numpy (big-endian fields, pgvector's own layout): every
    # float and id must arrive as given, in more than one chunk.
    from mfplatform.catalog.models import EndUser
    from mfplatform.registry import vectors

    _, version = _published(tenant_a, "main")
    with tenant_a.scope():
        ids = np.sort(np.array(EndUser.objects.values_list("pk", flat=True), dtype=np.int64))
    given = np.random.default_rng(3).standard_normal(
        (len(ids), version.dimensions)).astype(np.float32)
    chunk = vectors._COPY_CHUNK_ROWS
    vectors._COPY_CHUNK_ROWS = 7
    try:
        with tenant_a.scope(), transaction.atomic():
            vectors.drop_vectors(version)
            assert vectors.write_vectors(version, "user", ids, given) == len(ids) == 20
            with raw_connection().cursor() as cursor:
                cursor.execute(f"SELECT user_id, embedding FROM "
                               f"{partition_name('user', version.pk)} ORDER BY user_id")
                rows = cursor.fetchall()
            transaction.set_rollback(True)
    finally:
        vectors._COPY_CHUNK_ROWS = chunk
    assert [row[0] for row in rows] == ids.tolist()
    np.testing.assert_array_equal(np.vstack([row[1].to_numpy() for row in rows]), given)


def test_retention_drops_a_block_it_empties(tenant_a, monkeypatch):
    # A block per version id: dropping a version empties its block.
    monkeypatch.setattr(vectors, "BLOCK_VERSIONS", 1)
    plan, v1 = _published(tenant_a, "main")
    with tenant_a.scope():
        v2 = publish(make_model_version(plan))
        promote(v2, actor="test", reason="newest")
        apply_retention(plan, keep=1)
    with connection.cursor() as cursor:
        for kind in ("item", "user"):
            cursor.execute("SELECT to_regclass(%s), to_regclass(%s)",
                           [block_name(kind, v1.pk), block_name(kind, v2.pk)])
            assert cursor.fetchone() == (None, block_name(kind, v2.pk))
