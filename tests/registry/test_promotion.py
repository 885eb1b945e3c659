"""Promotion gates, promote and roll back with an audit log, exactly one active version."""

import threading

import pytest
from django.db import connection

from mfplatform.registry.models import ModelStatus, ModelVersion, PromotionLog
from mfplatform.registry.services import RegistryError, decide_promotion, promote, rollback
from mfplatform.training.services import update_plan
from tenants.context import tenant_context
from tenants.models import ApiKey
from tests.factories import make_model_version, make_plan
from tests.registry.reports import report

pytestmark = pytest.mark.django_db

POLICY = {"metric": "ndcg@10", "min_improvement_over_active": 0.02,
          "min_improvement_over_popularity": 0.05, "max_popularity_concentration": 0.5}


@pytest.fixture
def plan(tenant_a):
    with tenant_a.scope():
        return make_plan(tenant_a.tenant, "main", promotion=POLICY)


def test_better_candidate_is_promoted_worse_is_rejected_with_reasons(tenant_a, plan):
    with tenant_a.scope():
        first = decide_promotion(make_model_version(plan, report=report(0.20)))
        assert first.status == ModelStatus.ACTIVE
        worse = decide_promotion(make_model_version(plan, report=report(0.201)))
        assert worse.status == ModelStatus.REJECTED
        assert worse.decision["verdict"] == "fail"
        assert worse.decision["active_version"] == 1
        assert any("not +2% over the active v1" in r for r in worse.decision["reasons"])
        # The numbers side by side: each value and what the candidate had to reach.
        assert worse.decision["values"] == {"candidate": 0.201, "popularity": 0.10,
                                            "active": 0.20, "top1pct_share": 0.05}
        assert worse.decision["thresholds"]["active"] == pytest.approx(0.204)
        assert worse.decision["thresholds"]["popularity"] == pytest.approx(0.105)
        assert worse.decision["thresholds"]["top1pct_share"] == 0.5
        better = decide_promotion(make_model_version(plan, report=report(0.25)))
        assert better.status == ModelStatus.ACTIVE
        assert better.decision["verdict"] == "pass" and better.decision["auto_promote"]
        first.refresh_from_db()
        assert first.status == ModelStatus.RETIRED and first.retired_at is not None
        log = list(PromotionLog.objects.order_by("created_at").values_list(
            "action", "from_version__version", "to_version__version", "actor"))
        assert log == [("auto_promote", None, 1, "system"), ("reject", 1, 2, "system"),
                       ("auto_promote", 1, 3, "system")]
        rejection = PromotionLog.objects.get(action="reject")
        assert "not +2% over the active v1 0.2000" in rejection.reason


def test_gates_on_popularity_and_concentration(tenant_a, plan):
    with tenant_a.scope():
        weak = decide_promotion(make_model_version(plan, report=report(0.104)))
        assert weak.status == ModelStatus.REJECTED
        assert weak.decision["reasons"] == [
            "ndcg@10 0.1040 is not +5% over popularity 0.1000"]
        narrow = decide_promotion(make_model_version(plan, report=report(0.3, top1=0.8)))
        assert narrow.status == ModelStatus.REJECTED
        assert "popularity concentration 0.800" in narrow.decision["reasons"][0]
        blank = decide_promotion(make_model_version(plan, report={}))
        assert blank.status == ModelStatus.REJECTED
        assert "the report has no ndcg@10" in blank.decision["reasons"]


def test_required_and_failed_checks_reject(tenant_a, plan):
    with tenant_a.scope():
        config = dict(plan.config)
        config["promotion"] = {**config["promotion"], "required_checks": ["finite"]}
        update_plan(plan, config=config)
        missing = decide_promotion(make_model_version(plan, report=report(0.3)))
        assert missing.status == ModelStatus.REJECTED
        assert "required checks not run: finite" in missing.decision["reasons"][0]
        failing = make_model_version(plan, report=report(0.3))
        failing.checks = [{"name": "finite", "passed": False, "reason": "NaN", "values": {}}]
        failing.save()
        failing = decide_promotion(failing)
        assert failing.status == ModelStatus.REJECTED
        assert "quality checks failed: finite" in failing.decision["reasons"][0]
        passing = make_model_version(plan, report=report(0.3))
        passing.checks = [{"name": "finite", "passed": True, "reason": "", "values": {}}]
        passing.save()
        assert decide_promotion(passing).status == ModelStatus.ACTIVE


def test_a_rejected_or_failed_version_cannot_be_promoted(tenant_a, plan):
    with tenant_a.scope():
        rejected = decide_promotion(make_model_version(plan, report=report(0.01)))
        failed = make_model_version(plan, status=ModelStatus.FAILED)
        # Without an override: the gate's rejection says how to overrule it, a failure cannot be.
        for version, says in ((rejected, "an operator can override the rejection"),
                              (failed, "only a candidate or a retired")):
            with pytest.raises(RegistryError, match=says):
                promote(version, actor="test", reason="try anyway")
        with pytest.raises(RegistryError, match="a reason is required"):
            promote(make_model_version(plan), actor="test", reason="  ")
        assert not ModelVersion.objects.filter(plan=plan, status=ModelStatus.ACTIVE).exists()


def test_manual_promotion_waits_for_a_person(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "manual", promotion={"auto_promote": False})
        version = decide_promotion(make_model_version(plan, report=report(0.3)))
        assert version.status == ModelStatus.CANDIDATE
        assert version.decision["verdict"] == "pass"
        assert version.decision["auto_promote"] is False
    client = tenant_a.client()
    missing = client.post(f"/api/v1/models/{version.pk}/promote", {}, format="json")
    assert missing.status_code == 400  # a reason is required
    assert "reason" in missing.json()["errors"]
    response = client.post(f"/api/v1/models/{version.pk}/promote",
                           {"reason": "reviewed the report"}, format="json")
    assert response.status_code == 200
    assert response.json()["actor"].startswith("api key ")
    detail = client.get(f"/api/v1/models/{version.pk}").json()
    assert detail["status"] == "active"
    assert detail["report"] == report(0.3)
    assert [(e["action"], e["to_version"], e["reason"]) for e in detail["log"]] == [
        ("promote", version.pk, "reviewed the report")]
    again = client.post(f"/api/v1/models/{version.pk}/promote", {"reason": "twice"},
                        format="json")
    assert again.status_code == 409


def test_rollback_restores_previous_and_audit_log_says_who_and_why(tenant_a, plan):
    with tenant_a.scope():
        v1 = decide_promotion(make_model_version(plan, report=report(0.20)))
        v2 = decide_promotion(make_model_version(plan, report=report(0.30)))
        assert v2.status == ModelStatus.ACTIVE
    client = tenant_a.client()
    missing = client.post(f"/api/v1/models/{v2.pk}/rollback", {}, format="json")
    assert missing.status_code == 400
    response = client.post(f"/api/v1/models/{v2.pk}/rollback",
                           {"reason": "conversion dropped 8% after v2"}, format="json")
    assert response.status_code == 200, response.json()
    entry = response.json()
    assert (entry["action"], entry["from_version"], entry["to_version"]) == (
        "rollback", v2.pk, v1.pk)
    assert entry["reason"] == "conversion dropped 8% after v2"
    assert entry["actor"] == f"api key {tenant_a.key.prefix} (test)"
    assert entry["created_at"]
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=v1.pk).status == ModelStatus.ACTIVE
        assert ModelVersion.objects.get(pk=v2.pk).status == ModelStatus.RETIRED
    active = client.get("/api/v1/models?status=active").json()["results"]
    assert [m["id"] for m in active] == [v1.pk]
    # Rolling back a version that is not active is a clear 409.
    again = client.post(f"/api/v1/models/{v2.pk}/rollback", {"reason": "again"}, format="json")
    assert again.status_code == 409 and "not the active" in again.json()["detail"]
    # v1 never had a predecessor: nothing to roll back to.
    with tenant_a.scope():
        PromotionLog.objects.filter(action="rollback").delete()
        ModelVersion.objects.filter(pk=v1.pk).update(status=ModelStatus.RETIRED)
        ModelVersion.objects.filter(pk=v2.pk).update(status=ModelStatus.CANDIDATE)
        promote(v1, actor="test", reason="first again")
        with pytest.raises(RegistryError, match="no previously active version"):
            rollback(v1, actor="test", reason="nowhere to go")


def test_key_without_manage_scope_reads_but_cannot_promote(tenant_a, plan):
    with tenant_a.scope():
        version = make_model_version(plan, report=report(0.3))
        _key, raw = ApiKey.issue(tenant_a.tenant, ["recommend"])
    client = tenant_a.client(raw)
    assert client.get(f"/api/v1/models/{version.pk}").status_code == 200
    assert client.get(f"/api/v1/models/{version.pk}/report").status_code == 200
    for operation in ("promote", "rollback"):
        assert client.post(f"/api/v1/models/{version.pk}/{operation}", {"reason": "x y z"},
                           format="json").status_code == 403
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=version.pk).status == ModelStatus.CANDIDATE
        assert not PromotionLog.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_leave_exactly_one_active_and_readers_always_see_one(tenant_a):
    """Threads with their own database connections promote different candidates of one plan
    at the same moment while another keeps counting active versions the way serving reads
    them: the switches queue on the plan row, each completes, and no reader ever sees none
    or two."""
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "race", promotion={"auto_promote": False})
        first = make_model_version(plan, report=report(0.3))
        promote(first, actor="test", reason="start with one active")
        versions = [make_model_version(plan, report=report(0.3)) for _ in range(4)]
    barrier = threading.Barrier(len(versions) + 1)
    done = threading.Event()
    outcomes, seen, errors = [], [], []

    def race(version):
        try:
            with tenant_context(tenant_a.tenant):
                barrier.wait()
                promote(version, actor="test", reason="race")
                outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes.append(repr(exc))
        finally:
            connection.close()

    def read():
        try:
            with tenant_context(tenant_a.tenant):
                barrier.wait()
                while not done.is_set() or len(seen) < 20:
                    seen.append(ModelVersion.objects.filter(
                        tenant=tenant_a.tenant, plan__is_serving=True,
                        status=ModelStatus.ACTIVE).count())
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    threads = [threading.Thread(target=race, args=(v,)) for v in versions]
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert outcomes == ["ok"] * len(versions)  # serialised: every switch completes
    assert not errors and seen and set(seen) == {1}
    with tenant_a.scope():
        assert ModelVersion.objects.filter(plan=plan, status=ModelStatus.ACTIVE).count() == 1
        assert ModelVersion.objects.filter(plan=plan, status=ModelStatus.RETIRED).count() == 4
        # Each switch retired exactly the version the one before it activated: a chain.
        entries = list(PromotionLog.objects.filter(plan=plan).order_by("created_at", "pk"))
        assert len(entries) == len(versions) + 1
        for before, after in zip(entries, entries[1:], strict=False):
            assert after.from_version_id == before.to_version_id


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_a_second_active_version(tenant_a):
    from django.db import IntegrityError

    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "guard")
        make_model_version(plan, status=ModelStatus.ACTIVE)
        with pytest.raises(IntegrityError, match="one_active_model_per_plan"):
            make_model_version(plan, status=ModelStatus.ACTIVE)


def test_a_model_that_does_not_beat_popularity_is_never_promoted(tenant_a):
    """The absolute floor: whatever the relative thresholds, a candidate must score above the
    popularity baseline on the plan's metric."""
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "defaults")  # min improvement over popularity 0%
        # Every event on one item: no test positive left, model and popularity both score 0.
        nothing = decide_promotion(make_model_version(plan, report=report(0.0, popularity=0.0)))
        assert nothing.status == ModelStatus.REJECTED
        assert nothing.decision["reasons"] == [
            "ndcg@10 0.0000 does not beat popularity 0.0000: a model must, whatever the "
            "relative thresholds"]
        assert nothing.decision["thresholds"]["popularity_floor"] == 0.0
        lenient = make_plan(tenant_a.tenant, "lenient", promotion={
            "min_improvement_over_popularity": -0.5, "min_improvement_over_active": -0.5})
        equal = decide_promotion(make_model_version(lenient, report=report(0.10)))
        assert equal.status == ModelStatus.REJECTED
        assert "does not beat popularity 0.1000" in equal.decision["reasons"][0]
        better = decide_promotion(make_model_version(lenient, report=report(0.1001)))
        assert better.status == ModelStatus.ACTIVE, better.decision
        # Within the lenient relative threshold of the active version, but not above
        # popularity: still rejected.
        worse = decide_promotion(make_model_version(lenient, report=report(0.09)))
        assert worse.status == ModelStatus.REJECTED
        assert "does not beat popularity" in worse.decision["reasons"][0]
