"""Retention: the newest N versions of a plan keep their vectors; older ones lose the rows and
the HNSW index but keep metadata and reports; the active version and the one a rollback would
restore always keep theirs."""

import numpy as np
import pytest
from django.db import connection, transaction

from mfplatform.catalog.models import EndUser, Item
from mfplatform.registry.models import ItemVector, ModelStatus, ModelVersion, UserVector
from mfplatform.registry.runs import execute_run
from mfplatform.registry.services import RegistryError, apply_retention, promote, rollback
from mfplatform.registry.vectors import create_item_index, write_vectors
from mfplatform.training.services import queue_run
from tests import artifact_files
from tests.factories import TEST_PLAN, load_synthetic, make_model_version, make_plan, synthetic
from tests.registry.reports import full_report

pytestmark = pytest.mark.django_db


def publish(version: ModelVersion) -> ModelVersion:
    """Give a factory-made version vectors and its HNSW index, as the pipeline does."""
    items = np.array(Item.objects.filter(tenant=version.tenant).values_list("pk", flat=True))
    users = np.array(EndUser.objects.filter(tenant=version.tenant).values_list("pk", flat=True))
    rng = np.random.default_rng(version.version)
    with transaction.atomic():
        version.n_item_vectors = write_vectors(version, "item", items,
                                               rng.random((len(items), version.dimensions)))
        version.n_user_vectors = write_vectors(version, "user", users,
                                               rng.random((len(users), version.dimensions)))
        create_item_index(version)
        version.save(update_fields=["n_item_vectors", "n_user_vectors"])
    return version


def index_exists(version: ModelVersion) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s",
                       [version.index_name])
        return cursor.fetchone()[0] == 1


def has_vectors(version: ModelVersion) -> bool:
    return (ItemVector.objects.filter(model_version=version).exists()
            and UserVector.objects.filter(model_version=version).exists()
            and index_exists(version))


def test_keeps_the_newest_n_the_active_and_the_rollback_target(tenant_a):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(n_users=20, n_items=15, n_interactions=120))
        plan = make_plan(tenant_a.tenant, "main", promotion={"auto_promote": False})
        v1, v2, v3, v4, v5 = (publish(make_model_version(plan, report=full_report()))
                              for _ in range(5))
        for version in (v1, v2, v3):
            promote(version, actor="test", reason="next")
        ModelVersion.objects.filter(pk=v5.pk).update(status=ModelStatus.REJECTED)
        # v3 active, v2 what a rollback restores, v4 and v5 the newest two.
        dropped = apply_retention(plan, keep=2)
        assert [v.version for v in dropped] == [1]
        v1.refresh_from_db()
        assert v1.vectors_dropped_at is not None
        assert not ItemVector.objects.filter(model_version=v1).exists()
        assert not UserVector.objects.filter(model_version=v1).exists()
        assert not index_exists(v1)
        assert all(has_vectors(v) for v in (v2, v3, v4, v5))
        # Metadata and the report stay forever.
        assert v1.report == full_report() and v1.n_item_vectors == 15
        assert v1.status == ModelStatus.RETIRED
        # A version without vectors cannot serve again.
        with pytest.raises(RegistryError, match="dropped by retention"):
            promote(v1, actor="test", reason="bring back v1")
        # Run again: nothing more to drop at the same N (idempotent).
        assert apply_retention(plan, keep=2) == []
        # With N = 0 only the active version and the rollback target keep vectors.
        assert {v.version for v in apply_retention(plan, keep=0)} == {4, 5}
        assert has_vectors(v3) and has_vectors(v2)
        # ...so an instant rollback still works after the most aggressive retention.
        rollback(v3, actor="test", reason="v3 misbehaves")
        v2.refresh_from_db()
        assert v2.status == ModelStatus.ACTIVE
    detail = tenant_a.client().get(f"/api/v1/models/{v1.pk}").json()
    assert detail["vectors_dropped_at"] and detail["report"] == full_report()
    page = tenant_a.client().get(f"/api/v1/models/{v1.pk}/report")
    assert page.status_code == 200 and b"dropped by retention" in page.content


def test_failed_versions_are_recorded_as_without_vectors(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main")
        failed = make_model_version(plan, status=ModelStatus.FAILED)
        assert [v.pk for v in apply_retention(plan, keep=3)] == [failed.pk]
        failed.refresh_from_db()
        assert failed.vectors_dropped_at is not None


def test_retention_runs_after_each_publication(tenant_a, settings,
                                              django_capture_on_commit_callbacks):
    settings.MODEL_RETENTION_KEEP = 1
    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        load_synthetic(tenant_a.tenant, synthetic(n_users=120, n_items=60, n_interactions=2500))
        plan = make_plan(tenant_a.tenant, "main", **{
            **TEST_PLAN, "promotion": {"auto_promote": False}})
        first = execute_run(queue_run(tenant_a.tenant, plan))
        first.refresh_from_db()
        assert first.vectors_dropped_at is None and has_vectors(first)
        second = execute_run(queue_run(tenant_a.tenant, plan))
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.vectors_dropped_at is not None and not has_vectors(first)
        assert first.report["metrics"] and first.n_item_vectors > 0
        assert second.vectors_dropped_at is None and has_vectors(second)
    # The dropped version's model files went with its vectors; the kept one's are there.
    assert not any(artifact_files.exists(first, name) for name in first.checksums)
    assert all(artifact_files.exists(second, name) for name in second.checksums)
