"""Vector partitions grouped in blocks of model version ids: the parents are RANGE-partitioned
into blocks of registry.vectors.BLOCK_VERSIONS ids, each block LIST-partitioned by model
version (one partition per version, as before).

ATTACH PARTITION reads the partition bounds of the table it attaches to, and checks the
parent's partitioned unique index against every partition: with one flat parent that grew with
every version stored (measured: 37 ms at 15 partitions, 116 ms at 3,005, per attach, two per
publication). A block holds at most BLOCK_VERSIONS partitions, so attaching costs the same
whatever the number of versions; a query through the parent with the version as a constant
still prunes at planning time, in two steps.

Each existing partition is detached from the flat parent and attached to its block: its
unique index and foreign keys match the new parent's, so nothing is rebuilt or re-checked
beyond the bound (the CHECK added first lets ATTACH skip that scan)."""

from django.db import migrations, transaction

from mfplatform.registry import vectors
from tenants.rls import enable_rls

_REFERENCES = {"item": ("item_id", "catalog_item"), "user": ("user_id", "catalog_enduser")}
MOVE_BATCH = 50  # partitions a transaction moves


def _blocked_parent_sql(kind: str) -> list[str]:
    parent = vectors.PARENTS[kind]
    ref, ref_table = _REFERENCES[kind]
    flat = f"{parent}_flat"
    return [
        f"ALTER TABLE {parent} RENAME TO {flat}",
        f"ALTER TABLE {flat} RENAME CONSTRAINT unique_{kind}_vector TO unique_{kind}_vector_flat",
        f"ALTER SEQUENCE {parent}_ids OWNED BY NONE",  # kept when the flat parent goes
        f"CREATE TABLE {parent} (LIKE {flat} INCLUDING DEFAULTS) "
        f"PARTITION BY RANGE (model_version_id)",
        f"ALTER TABLE {parent} ADD CONSTRAINT unique_{kind}_vector "
        f"UNIQUE ({ref}, model_version_id)",
        f"ALTER TABLE {parent} ADD FOREIGN KEY ({ref}) REFERENCES {ref_table} (id) "
        f"DEFERRABLE INITIALLY DEFERRED",
        f"ALTER TABLE {parent} ADD FOREIGN KEY (tenant_id) REFERENCES tenants_tenant (id) "
        f"DEFERRABLE INITIALLY DEFERRED",
        f"ALTER TABLE {parent} ADD FOREIGN KEY (model_version_id) "
        f"REFERENCES registry_modelversion (id) DEFERRABLE INITIALLY DEFERRED",
        f"ALTER SEQUENCE {parent}_ids OWNED BY {parent}.id",
    ]


def to_blocks(apps, schema_editor):
    """Not one transaction: moving a partition locks it and its indexes, and thousands of
    them in one transaction exhaust the lock table ("out of shared memory", measured on 1,990
    versions). The new parent is made in one transaction, then partitions move in batches of
    MOVE_BATCH, each batch committed; a migration stopped half-way resumes where it was."""
    connection = schema_editor.connection
    for kind in vectors.PARENTS:
        parent = vectors.PARENTS[kind]
        flat = f"{parent}_flat"
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [flat])
            if cursor.fetchone()[0] is None:
                for statement in _blocked_parent_sql(kind) + enable_rls(parent).sql:
                    cursor.execute(statement)
        while _move_batch(connection, kind, flat):
            pass
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {flat}")


def _move_batch(connection, kind: str, flat: str) -> int:
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                       "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass LIMIT %s",
                       [flat, MOVE_BATCH])
        tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            version_id = int(table.rsplit("_v", 1)[1])
            cursor.execute(f"ALTER TABLE {flat} DETACH PARTITION {table}")
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_bound "
                           f"CHECK (model_version_id = {version_id})")
            vectors.attach_partition(cursor, kind, version_id)
    return len(tables)


class Migration(migrations.Migration):
    atomic = False  # to_blocks commits as it goes

    dependencies = [
        ("registry", "0006_item_vector_cold"),
    ]

    operations = [migrations.RunPython(to_blocks)]
