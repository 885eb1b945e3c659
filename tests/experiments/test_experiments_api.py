"""Experiments over REST: create, start, stop, one running per surface, and serving."""

import pytest
from django.db import IntegrityError, transaction

from mfplatform.experiments.impressions import flush_impressions
from mfplatform.experiments.models import Experiment, ExperimentStatus, Impression
from mfplatform.registry.runs import execute_run
from mfplatform.registry.services import promote
from mfplatform.training.services import queue_run


def _body(served, name="mf-vs-popularity", surface="recommendations", **extra):
    return {"name": name, "surface": surface, "min_samples": 10, "variants": [
        {"name": "control", "kind": "popularity", "share": 0.5, "is_control": True},
        {"name": "model", "kind": "version", "model_version": served.version.pk,
         "share": 0.5}], **extra}


def _create(served, **kwargs) -> dict:
    response = served.client().post("/api/v1/experiments", _body(served, **kwargs),
                                    format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_list_get_start_stop(served):
    client = served.client()
    created = _create(served)
    assert created["status"] == "draft"
    assert [v["name"] for v in created["variants"]] == ["control", "model"]
    assert client.get("/api/v1/experiments").json()["results"][0]["id"] == created["id"]
    path = f"/api/v1/experiments/{created['id']}"
    assert client.get(path).json()["variants"][1]["model_version"] == served.version.pk
    started = client.post(f"{path}/start").json()
    assert started["status"] == "running" and started["started_at"]
    assert client.post(f"{path}/start").status_code == 409
    assert client.post(f"{path}/stop").json()["status"] == "stopped"


@pytest.mark.parametrize(("change", "field"), [
    ({"variants": [{"name": "a", "kind": "popularity", "share": 1.0}]}, "variants"),
    ({"surface": "homepage"}, "surface"),
    ({"min_samples": 0}, "min_samples"),
])
def test_bad_input_is_a_400_naming_the_field(served, change, field):
    response = served.client().post("/api/v1/experiments", {**_body(served), **change},
                                    format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_shares_must_sum_to_one_and_versions_be_the_tenants(served):
    client = served.client()
    body = _body(served)
    body["variants"][0]["share"] = 0.6
    response = client.post("/api/v1/experiments", body, format="json")
    assert response.status_code == 400 and "variants" in response.json()["errors"]
    body = _body(served)
    body["variants"][1]["model_version"] = 987654
    response = client.post("/api/v1/experiments", body, format="json")
    assert response.status_code == 400
    assert "variants.1.model_version" in response.json()["errors"]


def test_one_running_experiment_per_surface(served):
    client = served.client()
    first, second = _create(served, name="one"), _create(served, name="two")
    other_surface = _create(served, name="three", surface="similar_items")
    assert client.post(f"/api/v1/experiments/{first['id']}/start").status_code == 200
    response = client.post(f"/api/v1/experiments/{second['id']}/start")
    assert response.status_code == 409 and "running" in response.json()["detail"]
    assert client.post(f"/api/v1/experiments/{other_surface['id']}/start").status_code == 200
    # The database itself refuses a second running one, whatever the application checks.
    with served.scope(), pytest.raises(IntegrityError), transaction.atomic():
        Experiment.objects.filter(pk=second["id"]).update(status=ExperimentStatus.RUNNING)


def test_serving_labels_responses_and_serves_each_variants_version(served):
    client = served.client()
    experiment = _create(served)
    client.post(f"/api/v1/experiments/{experiment['id']}/start")
    seen = {}
    for u in range(40):
        body = client.get(f"/api/v1/recommendations?user=user-{u}&k=5").json()
        assert body["experiment"] == {"id": experiment["id"], "name": "mf-vs-popularity"}
        sources = {i["source"] for i in body["items"]}
        if body["variant"] == "control":
            assert sources == {"popularity"} and not body["personalised"]
        else:
            assert "mf" in sources
        # Sticky: the same user, the same variant.
        again = client.get(f"/api/v1/recommendations?user=user-{u}&k=5").json()
        assert again["variant"] == body["variant"]
        seen[body["variant"]] = seen.get(body["variant"], 0) + 1
    assert set(seen) == {"control", "model"}
    anonymous = client.get("/api/v1/recommendations?anonymous=true&k=5").json()
    assert anonymous["experiment"] is None and anonymous["variant"] is None
    flush_impressions()
    with served.scope():
        rows = Impression.objects.filter(experiment_id=experiment["id"])
        assert rows.count() == 80  # the anonymous one is in no experiment
        assert set(rows.values_list("variant", flat=True)) == {"control", "model"}
    client.post(f"/api/v1/experiments/{experiment['id']}/stop")
    after = client.get("/api/v1/recommendations?user=user-1&k=5").json()
    assert after["experiment"] is None  # a stop applies to the next request


def test_a_variant_serves_an_older_version_and_promote_makes_it_active(served):
    with served.scope():
        newer = execute_run(queue_run(served.tenant, served.plan))
        if newer.status != "active":  # not better than v1 on the same data: made active
            promote(newer, actor="test", reason="set up", override=True)
        newer.refresh_from_db()
    assert newer.status == "active"  # and v1 retires, with its vectors
    client = served.client()
    body = {"name": "old-vs-new", "min_samples": 1, "variants": [
        {"name": "current", "kind": "plan", "plan": served.plan.pk, "share": 0.5},
        {"name": "old", "kind": "version", "model_version": served.version.pk,
         "share": 0.5}]}
    experiment = client.post("/api/v1/experiments", body, format="json").json()
    client.post(f"/api/v1/experiments/{experiment['id']}/start")
    versions = {}
    for u in range(30):
        response = client.get(f"/api/v1/recommendations?user=user-{u}&k=5").json()
        versions.setdefault(response["variant"], set()).add(response["model_version"]["id"])
    assert versions == {"current": {newer.pk}, "old": {served.version.pk}}
    promoted = client.post(f"/api/v1/experiments/{experiment['id']}/promote",
                           {"variant": "old", "reason": "won the test"}, format="json")
    assert promoted.status_code == 200, promoted.json()
    assert "old-vs-new" in promoted.json()["reason"]
    with served.scope():
        served.version.refresh_from_db()
    assert served.version.status == "active"
    # The plan variant follows its plan's active version at once.
    response = client.get("/api/v1/recommendations?user=user-0&k=5").json()
    assert response["model_version"]["id"] == served.version.pk
    missing = client.post(f"/api/v1/experiments/{experiment['id']}/promote",
                          {"variant": "nope", "reason": "x"}, format="json")
    assert missing.status_code == 400 and "variant" in missing.json()["errors"]
