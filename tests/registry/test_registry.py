"""Promotion gates, promote/rollback with an audit log, one active version, retention."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from mfplatform.registry.models import (
    ItemVector,
    ModelStatus,
    ModelVersion,
    PromotionLog,
    UserVector,
)
from mfplatform.registry.services import RegistryError, apply_retention, decide_promotion, promote
from mfplatform.training.pipeline import execute_run
from mfplatform.training.services import queue_run, update_plan
from tenants.context import tenant_context
from tenants.models import Role
from tenants.services import add_member
from tests.factories import TEST_PLAN, load_synthetic, make_model_version, make_plan, synthetic

pytestmark = pytest.mark.django_db


def report(ndcg: float, popularity: float = 0.10, top1: float = 0.05) -> dict:
    return {"metrics": {"overall": {"10": {"ndcg": ndcg, "top1pct_share": top1}}},
            "baselines": {"popularity": {"overall": {"10": {"ndcg": popularity}}}}}


@pytest.fixture
def plan(tenant_a):
    with tenant_a.scope():
        return make_plan(tenant_a.tenant, "main", promotion={
            "metric": "ndcg@10", "min_improvement_over_active": 0.02,
            "min_improvement_over_popularity": 0.05, "max_popularity_concentration": 0.5})


def test_better_candidate_is_promoted_worse_is_rejected_with_reasons(tenant_a, plan):
    with tenant_a.scope():
        first = decide_promotion(make_model_version(plan, report=report(0.20)))
        assert first.status == ModelStatus.ACTIVE
        worse = decide_promotion(make_model_version(plan, report=report(0.201)))
        assert worse.status == ModelStatus.REJECTED
        assert worse.decision["verdict"] == "fail"
        assert any("not +2% over the active v1" in r for r in worse.decision["reasons"])
        assert worse.decision["values"] == {"candidate": 0.201, "popularity": 0.10,
                                            "active": 0.20, "top1pct_share": 0.05}
        better = decide_promotion(make_model_version(plan, report=report(0.25)))
        assert better.status == ModelStatus.ACTIVE
        first.refresh_from_db()
        assert first.status == ModelStatus.RETIRED
        log = list(PromotionLog.objects.order_by("created_at").values_list(
            "action", "to_version__version"))
        assert log == [("auto_promote", 1), ("reject", 2), ("auto_promote", 3)]


def test_gates_on_popularity_and_concentration(tenant_a, plan):
    with tenant_a.scope():
        weak = decide_promotion(make_model_version(plan, report=report(0.104)))
        assert weak.status == ModelStatus.REJECTED
        assert "over popularity" in weak.decision["reasons"][0]
        narrow = decide_promotion(make_model_version(plan, report=report(0.3, top1=0.8)))
        assert narrow.status == ModelStatus.REJECTED
        assert "popularity concentration 0.800" in narrow.decision["reasons"][0]


def test_required_and_failed_checks_reject(tenant_a, plan):
    with tenant_a.scope():
        config = dict(plan.config)
        config["promotion"] = {**config["promotion"], "required_checks": ["finite"]}
        update_plan(plan, config=config)
        missing = decide_promotion(make_model_version(plan, report=report(0.3)))
        assert "required checks not run: finite" in missing.decision["reasons"][0]
        failing = make_model_version(plan, report=report(0.3))
        failing.checks = [{"name": "finite", "passed": False, "reason": "NaN", "values": {}}]
        failing.save()
        assert "quality checks failed: finite" in decide_promotion(failing).decision[
            "reasons"][0]


def test_manual_promotion_waits_for_a_person(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "manual", promotion={"auto_promote": False})
        version = decide_promotion(make_model_version(plan, report=report(0.3)))
        assert version.status == ModelStatus.CANDIDATE
        assert version.decision["verdict"] == "pass"
    client = tenant_a.client()
    assert client.post(f"/api/v1/models/{version.pk}/promote", {}, format="json"
                       ).status_code == 400  # a reason is required
    response = client.post(f"/api/v1/models/{version.pk}/promote",
                           {"reason": "reviewed the report"}, format="json")
    assert response.status_code == 200
    assert response.json()["actor"].startswith("api key ")
    assert client.get(f"/api/v1/models/{version.pk}").json()["status"] == "active"


def test_rollback_restores_previous_and_audit_log_says_who_and_why(tenant_a, plan):
    with tenant_a.scope():
        v1 = decide_promotion(make_model_version(plan, report=report(0.20)))
        v2 = decide_promotion(make_model_version(plan, report=report(0.30)))
        assert v2.status == ModelStatus.ACTIVE
    client = tenant_a.client()
    response = client.post(f"/api/v1/models/{v2.pk}/rollback",
                           {"reason": "conversion dropped 8% after v2"}, format="json")
    assert response.status_code == 200, response.json()
    entry = response.json()
    assert (entry["action"], entry["from_version"], entry["to_version"]) == (
        "rollback", v2.pk, v1.pk)
    assert entry["reason"] == "conversion dropped 8% after v2"
    assert entry["actor"] == f"api key {tenant_a.key.prefix} (test)"
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=v1.pk).status == ModelStatus.ACTIVE
        assert ModelVersion.objects.get(pk=v2.pk).status == ModelStatus.RETIRED
    # Rolling back a version that is not active is a clear 409.
    again = client.post(f"/api/v1/models/{v2.pk}/rollback", {"reason": "again"}, format="json")
    assert again.status_code == 409 and "not the active" in again.json()["detail"]


def test_analyst_key_without_manage_cannot_promote(tenant_a, plan):
    from tenants.models import ApiKey

    with tenant_a.scope():
        version = make_model_version(plan, report=report(0.3))
        _key, raw = ApiKey.issue(tenant_a.tenant, ["recommend"])
    client = tenant_a.client(raw)
    assert client.get(f"/api/v1/models/{version.pk}").status_code == 200
    assert client.post(f"/api/v1/models/{version.pk}/promote", {"reason": "x y z"},
                       format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_leave_exactly_one_active(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "race", promotion={"auto_promote": False})
        versions = [make_model_version(plan, report=report(0.3)) for _ in range(4)]
    barrier = threading.Barrier(len(versions))
    outcomes = []

    def race(version):
        try:
            with tenant_context(tenant_a.tenant):
                barrier.wait()
                promote(version, actor="test", reason="race")
                outcomes.append("ok")
        except RegistryError as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == len(versions)  # serialised, each switch is complete
    with tenant_a.scope():
        active = ModelVersion.objects.filter(plan=plan, status=ModelStatus.ACTIVE)
        assert active.count() == 1
        assert PromotionLog.objects.filter(plan=plan).count() == len(versions)


def test_retention_drops_old_vectors_and_keeps_metadata(tenant_a, settings):
    settings.MODEL_RETENTION_KEEP = 2
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(n_users=120, n_items=60, n_interactions=2500))
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        versions = [execute_run(queue_run(tenant_a.tenant, plan)) for _ in range(3)]
        for version in versions:
            version.refresh_from_db()
        oldest = versions[0]
        assert oldest.vectors_dropped_at is not None
        assert not ItemVector.objects.filter(model_version=oldest).exists()
        assert not UserVector.objects.filter(model_version=oldest).exists()
        assert oldest.report["metrics"]  # metadata and report stay
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s",
                           [oldest.index_name])
            assert cursor.fetchone()[0] == 0
        assert all(ItemVector.objects.filter(model_version=v).exists() for v in versions[1:])
        # The active version always keeps its vectors, whatever its age.
        dropped = {v.pk for v in apply_retention(plan, 0)}
        assert dropped == {v.pk for v in versions[1:] if v.status != ModelStatus.ACTIVE}


def test_tenant_admin_sees_only_own_reports(client, tenant_a, tenant_b, plan):
    with tenant_a.scope():
        mine = decide_promotion(make_model_version(plan, report=report(0.3)))
    with tenant_b.scope():
        theirs = make_model_version(make_plan(tenant_b.tenant, "b"), report=report(0.4))
    add_member(tenant_a.tenant, "ann@alpha.test", Role.ANALYST)
    client.force_login(get_user_model().objects.get(username="ann@alpha.test"))
    listing = client.get("/admin/registry/modelversion/").content.decode()
    assert f"/admin/registry/modelversion/{mine.pk}/report/" in listing
    assert f"/admin/registry/modelversion/{theirs.pk}/report/" not in listing
    page = client.get(f"/admin/registry/modelversion/{mine.pk}/report/")
    assert page.status_code == 200 and b"Promotion decision" in page.content
    assert client.get(f"/admin/registry/modelversion/{theirs.pk}/report/").status_code == 404
    # An analyst reads reports but cannot promote or roll back.
    response = client.post("/admin/registry/modelversion/", {
        "action": "rollback_versions", "_selected_action": [mine.pk], "apply": "yes",
        "reason": "analysts may not"}, follow=True)
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=mine.pk).status == ModelStatus.ACTIVE
    assert b"Only the tenant" in response.content


def test_admin_promotion_asks_for_a_reason_and_logs_the_user(client, tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "manual", promotion={"auto_promote": False})
        version = decide_promotion(make_model_version(plan, report=report(0.3)))
    add_member(tenant_a.tenant, "owner@alpha.test", Role.OWNER)
    owner = get_user_model().objects.get(username="owner@alpha.test")
    client.force_login(owner)
    form = client.post("/admin/registry/modelversion/", {
        "action": "promote_versions", "_selected_action": [version.pk]})
    assert form.status_code == 200 and b"Why promote?" in form.content
    client.post("/admin/registry/modelversion/", {
        "action": "promote_versions", "_selected_action": [version.pk], "apply": "yes",
        "reason": "looked good in the report"})
    with tenant_a.scope():
        entry = PromotionLog.objects.get(to_version=version)
    assert (entry.action, entry.actor_user_id, entry.reason) == (
        "promote", owner.pk, "looked good in the report")
