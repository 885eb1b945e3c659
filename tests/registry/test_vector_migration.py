"""Migration 0005 moves the vectors of an existing deployment into one partition per model
version, and 0007 those partitions into blocks of version ids: run on a database of its own,
migrated to 0004, filled, then migrated forward."""

import subprocess
import sys
import uuid
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

from tests.conftest import REPO, subprocess_env

SEED = """
import numpy as np
from django.apps import apps
from django.core.management import call_command
from django.db import connection
call_command("migrate", "registry", "0004_version_file_checksums", verbosity=0)
for app in apps.get_app_configs():  # everything else as far as it goes without registry 0005
    if app.label != "registry" and app.models_module is not None:
        call_command("migrate", app.label, verbosity=0)
from mfplatform.registry.models import UserVector
from mfplatform.catalog.models import EndUser, Item
from tenants.context import tenant_context
from tests.conftest import make_tenant
from tests.factories import load_synthetic, make_model_version, make_plan, synthetic
for slug, n_items in (("alpha", 15), ("bravo", 12)):
    fixture = make_tenant(slug)
    with tenant_context(fixture.tenant):
        load_synthetic(fixture.tenant, synthetic(n_users=20, n_items=n_items, n_interactions=120))
        plan = make_plan(fixture.tenant, "main")
        items = list(Item.objects.all())
        users = list(EndUser.objects.all())
        for _ in range(2):
            version = make_model_version(plan)
            # In SQL: today's ItemVector has columns (cold, cold_placement) 0004 does not.
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO registry_itemvector (tenant_id, model_version_id, item_id, "
                    "embedding) VALUES (%s, %s, %s, %s::vector)",
                    [(fixture.tenant.pk, version.pk, item.pk, str([float(item.pk)] * 4))
                     for item in items])
            UserVector.objects.bulk_create(UserVector(
                tenant=fixture.tenant, model_version=version, user=user,
                embedding=np.ones(4, np.float32)) for user in users)
"""


def _manage(database_url: str, *args: str) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, text=True,
                            capture_output=True, timeout=300,
                            env=subprocess_env(DATABASE_URL=database_url))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def scratch_database(db):
    settings = connection.settings_dict
    name = f"mfmigration_{uuid.uuid4().hex[:8]}"
    server = dict(host=settings["HOST"], port=settings["PORT"] or None, user=settings["USER"],
                  password=settings["PASSWORD"] or None, dbname="postgres", autocommit=True)
    with psycopg.connect(**server) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    host = quote(settings["HOST"], safe="") if settings["HOST"].startswith("/") \
        else settings["HOST"]
    port = f":{settings['PORT']}" if settings["PORT"] else ""
    password = f":{quote(settings['PASSWORD'], safe='')}" if settings["PASSWORD"] else ""
    yield (f"postgresql://{settings['USER']}{password}@{host}{port}/{name}",
           {**server, "dbname": name})
    with psycopg.connect(**server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_existing_vectors_move_into_one_partition_per_version(scratch_database):
    url, connect = scratch_database
    _manage(url, "shell", "-c", SEED)
    _manage(url, "migrate", "--noinput")
    with psycopg.connect(**connect) as db:
        tree = db.execute(
            "SELECT c.relname, t.isleaf, t.level, c.relrowsecurity, c.relforcerowsecurity "
            "FROM pg_partition_tree('registry_itemvector') t JOIN pg_class c ON c.oid = t.relid "
            "WHERE t.level > 0 ORDER BY 1").fetchall()
        partitions = [row for row in tree if row[1]]
        assert len(partitions) == 4 and {row[2] for row in partitions} == {2}
        assert all(rls and force for *_, rls, force in tree)  # the blocks' too
        for gone in ("registry_itemvector_unpartitioned", "registry_itemvector_flat",
                     "registry_uservector_flat"):
            assert db.execute("SELECT to_regclass(%s)", [gone]).fetchone()[0] is None
        indexes = db.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE "
                             "'registry_itemvector_v%_hnsw'").fetchone()[0]
        assert indexes == 4
        tenants = dict(db.execute("SELECT slug, id FROM tenants_tenant").fetchall())
        for slug, items in (("alpha", 15), ("bravo", 12)):
            db.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenants[slug])])
            per_version = db.execute("SELECT model_version_id, count(*), "
                                     "bool_and((embedding::real[])[1] = item_id) FROM "
                                     "registry_itemvector GROUP BY 1").fetchall()
            assert [(n, same) for _, n, same in per_version] == [(items, True)] * 2
            users = db.execute("SELECT model_version_id, count(*) FROM registry_uservector "
                               "GROUP BY 1").fetchall()
            assert [n for _, n in users] == [20, 20]
        # New rows get ids after the moved ones.
        db.execute("SELECT set_config('app.tenant_id', '', false)")
        next_id = db.execute("SELECT nextval('registry_itemvector_ids')").fetchone()[0]
        assert next_id > 54
