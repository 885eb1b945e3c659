"""Plans and runs over REST; a real worker process trains two tenants side by side."""

import pytest
from django_celery_beat.models import PeriodicTask

from mfplatform.registry.models import ItemVector, ModelVersion, UserVector
from mfplatform.training.models import PlanRevision, RunStatus, TrainingRun
from tenants.context import rls_bypass
from tests.conftest import wait_for
from tests.factories import TEST_PLAN, load_synthetic, synthetic


@pytest.mark.django_db
def test_plan_config_errors_name_the_field(tenant_a):
    response = tenant_a.client().post("/api/v1/plans", {
        "name": "bad", "config": {"training": {"strategy": "nope", "factors": 0},
                                  "schedule": "every day", "split": {"kind": "random"}}},
        format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]["config"]
    assert "unknown strategy 'nope'" in errors["training"]["strategy"][0]
    assert "factors" in errors["training"]
    assert "cron" in errors["schedule"][0]
    assert "kind" in errors["split"]


@pytest.mark.django_db
def test_full_documented_plan_is_accepted(tenant_a):
    config = {
        "events": {"meaningful_click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
        "filters": ["exclude_bot", "exclude_internal", "valid_item", "consent_required"],
        "window": {"days": 90, "recency_half_life_days": 30},
        "training": {"strategy": "als", "factors": 64, "regularization": 0.05, "alpha": 10,
                     "iterations": 15},
        "split": {"kind": "temporal", "test_fraction": 0.2},
        "evaluation": {"k": [10, 20, 50]},
        "minimums": {"users": 100, "items": 50, "interactions": 1000},
        "promotion": {"metric": "ndcg@10", "min_improvement_over_active": 0.01,
                      "min_improvement_over_popularity": 0.05,
                      "max_popularity_concentration": 0.5, "auto_promote": False},
        "schedule": "0 3 * * *",
    }
    response = tenant_a.client().post("/api/v1/plans", {"name": "main", "config": config},
                                      format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["revision"] == 1 and body["is_serving"] is True
    assert body["config"]["training"]["alpha"] == 10
    # The cron is kept in django-celery-beat's tables, where beat (and the admin) see it.
    task = PeriodicTask.objects.get(name__startswith=f"train plan {body['id']} ")
    assert task.crontab.hour == "3" and task.task == "training.scheduled_run"


@pytest.mark.django_db
def test_config_change_creates_a_revision(tenant_a):
    client = tenant_a.client()
    plan = client.post("/api/v1/plans", {"name": "p"}, format="json").json()
    client.patch(f"/api/v1/plans/{plan['id']}", {"is_active": True}, format="json")
    with tenant_a.scope():
        assert PlanRevision.objects.filter(plan_id=plan["id"]).count() == 1
    response = client.patch(f"/api/v1/plans/{plan['id']}",
                            {"config": {"training": {"strategy": "bpr"}}}, format="json")
    assert response.json()["revision"] == 2
    with tenant_a.scope():
        revisions = PlanRevision.objects.filter(plan_id=plan["id"]).order_by("revision")
        assert [r.config["training"]["strategy"] for r in revisions] == ["als", "bpr"]


@pytest.mark.django_db
def test_second_train_request_while_running_is_409(tenant_a):
    client = tenant_a.client()
    plan = client.post("/api/v1/plans", {"name": "p"}, format="json").json()
    first = client.post(f"/api/v1/plans/{plan['id']}/train")
    assert first.status_code == 202 and first.json()["status"] == "queued"
    second = client.post(f"/api/v1/plans/{plan['id']}/train")
    assert second.status_code == 409
    assert second.json()["run"]["id"] == first.json()["id"]
    assert second.json()["code"] == "run_in_progress"


@pytest.mark.django_db
def test_scope_manage_is_required(tenant_a):
    with tenant_a.scope():
        from tenants.models import ApiKey

        _key, raw = ApiKey.issue(tenant_a.tenant, ["ingest", "recommend"])
    assert tenant_a.client(raw).get("/api/v1/plans").status_code == 403


def _train_over_rest(fixture):
    client = fixture.client()
    plan = client.post("/api/v1/plans", {"name": "main", "config": TEST_PLAN},
                       format="json").json()
    run = client.post(f"/api/v1/plans/{plan['id']}/train").json()
    return client, run


@pytest.mark.django_db(transaction=True)
def test_two_tenants_train_through_a_real_worker_in_isolation(
        tenant_a, tenant_b, celery_worker_process):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(seed=1), prefix="a-")
    with tenant_b.scope():
        load_synthetic(tenant_b.tenant, synthetic(seed=2, n_users=250), prefix="b-")
    client_a, run_a = _train_over_rest(tenant_a)
    client_b, run_b = _train_over_rest(tenant_b)

    def finished(client, run_id):
        body = client.get(f"/api/v1/runs/{run_id}").json()
        return body if body["status"] in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None

    done_a = wait_for(lambda: finished(client_a, run_a["id"]), timeout=120,
                      worker=celery_worker_process)
    done_b = wait_for(lambda: finished(client_b, run_b["id"]), timeout=120,
                      worker=celery_worker_process)
    for done in (done_a, done_b):
        assert done["status"] == "succeeded", done["error"]
        assert set(done["timings"]) == {"building_dataset", "training", "evaluating",
                                        "publishing"}
        assert done["model_version"] is not None

    model_a = client_a.get(f"/api/v1/models/{done_a['model_version']}").json()
    assert model_a["report"]["metrics"]["overall"]["10"]["ndcg"] > 0
    # Neither tenant sees the other's runs, datasets or models.
    assert client_a.get(f"/api/v1/runs/{run_b['id']}").status_code == 404
    assert client_a.get(f"/api/v1/models/{done_b['model_version']}").status_code == 404
    assert client_a.get(f"/api/v1/datasets/{done_b['dataset_version']}").status_code == 404
    assert [m["id"] for m in client_a.get("/api/v1/models").json()["results"]] == [
        done_a["model_version"]]
    # Neither model contains the other's users or items. Read across tenants on purpose: under
    # A's row-level security a row pointing at B's item would be invisible, not caught.
    with rls_bypass():
        version = ModelVersion.objects.get(pk=done_a["model_version"])
        items = set(ItemVector.objects.filter(model_version=version)
                    .values_list("item__external_id", flat=True))
        users = set(UserVector.objects.filter(model_version=version)
                    .values_list("user__external_id", flat=True))
        assert items and all(i.startswith("a-") for i in items)
        assert users and all(u.startswith("a-") for u in users)
    with tenant_a.scope():
        assert TrainingRun.objects.count() == 1
