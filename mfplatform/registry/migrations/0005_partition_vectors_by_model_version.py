"""Item and user vectors LIST-partitioned by model version, one partition (and, for items, one
plain HNSW index) per version, instead of one table with a partial index per version: the
planner, ANALYZE, index builds and retention then touch one version's rows only.

The existing tables are renamed, the partitioned ones created with the same columns, and each
version's rows moved into a partition of its own, built exactly as publication builds one
(registry.vectors). The unique pairs are (item, version) and (user, version), item or user
first, so that deleting an item or a user finds its rows through them in every partition. The
partitioned tables have no primary key on `id` (a key must contain the partition column)."""

from django.db import migrations

from mfplatform.registry import vectors
from tenants.rls import enable_rls

_COLUMNS = {"item": ("item_id", "catalog_item"), "user": ("user_id", "catalog_enduser")}


def _partitioned_table_sql(kind: str) -> list[str]:
    parent = vectors.PARENTS[kind]
    ref, ref_table = _COLUMNS[kind]
    old = f"{parent}_unpartitioned"
    return [
        f"ALTER TABLE {parent} RENAME TO {old}",
        f"ALTER TABLE {old} RENAME CONSTRAINT unique_{kind}_vector TO unique_{kind}_vector_old",
        f"CREATE SEQUENCE {parent}_ids",
        f"CREATE TABLE {parent} ("
        f"id bigint NOT NULL DEFAULT nextval('{parent}_ids'), "
        f"embedding vector NOT NULL, "
        f"{ref} bigint NOT NULL REFERENCES {ref_table} (id) DEFERRABLE INITIALLY DEFERRED, "
        f"tenant_id bigint NOT NULL REFERENCES tenants_tenant (id) "
        f"DEFERRABLE INITIALLY DEFERRED, "
        f"model_version_id bigint NOT NULL REFERENCES registry_modelversion (id) "
        f"DEFERRABLE INITIALLY DEFERRED, "
        f"CONSTRAINT unique_{kind}_vector UNIQUE ({ref}, model_version_id)"
        f") PARTITION BY LIST (model_version_id)",
        f"ALTER SEQUENCE {parent}_ids OWNED BY {parent}.id",
    ]


def move_rows(apps, schema_editor):
    """Each version's rows into its own partition. The application role owns the old tables,
    so lifting FORCE lets it read every tenant's rows there; each partition is then written in
    its tenant's own scope, so the new partitions' policies check every row."""
    with schema_editor.connection.cursor() as cursor:
        for kind, (ref, _) in _COLUMNS.items():
            parent = vectors.PARENTS[kind]
            old = f"{parent}_unpartitioned"
            cursor.execute(f"ALTER TABLE {old} NO FORCE ROW LEVEL SECURITY")
            cursor.execute(f"SELECT model_version_id, min(tenant_id), "
                           f"min(vector_dims(embedding)) FROM {old} GROUP BY 1 ORDER BY 1")
            for version_id, tenant_id, dims in cursor.fetchall():
                cursor.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_id)])
                table = vectors.create_partition_table(cursor, kind, version_id)
                cursor.execute(
                    f"INSERT INTO {table} (id, embedding, {ref}, tenant_id, model_version_id) "
                    f"SELECT id, embedding, {ref}, tenant_id, model_version_id FROM {old} "
                    f"WHERE model_version_id = %s", [version_id])
                if kind == "item":
                    vectors.create_item_hnsw_index(cursor, version_id, dims)
                cursor.execute(f"ANALYZE {table}")
                # Attached as this migration's flat layout wants (registry.vectors now
                # attaches to the blocks of migration 0007).
                cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {table} "
                               f"FOR VALUES IN ({int(version_id)})")
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_bound")
            cursor.execute("SELECT set_config('app.tenant_id', '', true)")
            cursor.execute(f"SELECT setval('{parent}_ids', coalesce(max(id), 0) + 1, false) "
                           f"FROM {old}")
            # The old table's partial HNSW indexes go with it.
            cursor.execute(f"DROP TABLE {old}")


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0004_version_file_checksums"),
        ("catalog", "0004_event_without_db_foreign_keys"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(_partitioned_table_sql("item") + _partitioned_table_sql("user")),
        enable_rls("registry_itemvector"),
        enable_rls("registry_uservector"),
        migrations.RunPython(move_rows),
    ]
