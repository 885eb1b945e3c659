"""Plan configuration over REST: strict keys, bounded numbers, PATCH merges, conflicts as 4xx."""

import pytest

from mfplatform.training.models import PlanRevision, TrainingPlan
from mfplatform.training.plans import validate_plan_config
from tests.factories import make_plan, make_run

pytestmark = pytest.mark.django_db


def _create(tenant_fixture, config, name="main", **fields):
    return tenant_fixture.client().post("/api/v1/plans", {"name": name, "config": config,
                                                          **fields}, format="json")


@pytest.mark.parametrize("config, path", [
    ({"evnts": {"click": 1}}, ["evnts"]),
    ({"training": {"strategy": "als", "factorz": 8}}, ["training", "factorz"]),
    ({"promotion": {"metrik": "ndcg@10"}}, ["promotion", "metrik"]),
    ({"model": "implicit_matrix_factorization_v1"}, ["model"]),
    ({"serving": {"candidates": 10}}, ["serving", "candidates"]),
    ({"serving": {"exploration": {"shar": 0.1}}}, ["serving", "exploration", "shar"]),
])
def test_unknown_keys_are_refused_with_their_path(tenant_a, config, path):
    response = _create(tenant_a, config)
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]["config"]
    for key in path:
        errors = errors[key]
    assert "unknown key" in errors[0]
    assert not TrainingPlan.objects.exists()


@pytest.mark.parametrize("config, path", [
    ({"promotion": {"metric": "ndcg@99999"}}, ["promotion", "metric"]),
    ({"split": {"test_days": 1e300}}, ["split", "test_days"]),
    ({"events": {"click": 1e300}}, ["events", "click"]),
    ({"training": {"alpha": 1e308}}, ["training", "alpha"]),
    ({"window": {"recency_half_life_days": 1e308}}, ["window", "recency_half_life_days"]),
    ({"promotion": {"min_improvement_over_active": 1e308}},
     ["promotion", "min_improvement_over_active"]),
    ({"minimums": {"users": 10**30}}, ["minimums", "users"]),
    ({"serving": {"exploration": {"share": 0.6}}}, ["serving", "exploration", "share"]),
    ({"serving": {"exploration": {"share": -0.1}}}, ["serving", "exploration", "share"]),
    ({"serving": {"exploration": {"max_item_age_days": 0}}},
     ["serving", "exploration", "max_item_age_days"]),
])
def test_numbers_out_of_bounds_are_refused_with_their_path(tenant_a, config, path):
    response = _create(tenant_a, config)
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]["config"]
    for key in path:
        errors = errors[key]
    assert errors


def test_exploration_is_off_unless_given_and_takes_its_defaults(tenant_a):
    created = _create(tenant_a, {"serving": {"exploration": {"share": 0.1}}})
    assert created.status_code == 201, created.json()
    assert created.json()["config"]["serving"] == {
        "exploration": {"share": 0.1, "max_item_age_days": 30.0}}
    plain = _create(tenant_a, {}, name="other")
    assert plain.json()["config"]["serving"] == {"exploration": None}


def test_promotion_metric_at_an_evaluated_k_is_accepted(tenant_a):
    response = _create(tenant_a, {"evaluation": {"k": [5, 25]},
                                  "promotion": {"metric": "recall@25"}})
    assert response.status_code == 201, response.json()


def test_patch_merges_the_config_it_was_sent(tenant_a):
    plan_id = _create(tenant_a, {"events": {"click": 2}, "training": {"factors": 8},
                                 "window": {"days": 30}}).json()["id"]
    response = tenant_a.client().patch(f"/api/v1/plans/{plan_id}",
                                       {"config": {"training": {"iterations": 3}}}, format="json")
    assert response.status_code == 200, response.json()
    config = response.json()["config"]
    assert config["training"]["iterations"] == 3 and config["training"]["factors"] == 8
    assert config["events"] == {"click": 2.0} and config["window"]["days"] == 30
    assert response.json()["revision"] == 2
    replaced = tenant_a.client().patch(f"/api/v1/plans/{plan_id}",
                                       {"config": {"events": {"purchase": 5}}}, format="json")
    assert replaced.json()["config"]["events"] == {"purchase": 5.0}  # a mapping is one setting


def test_patch_of_an_old_config_with_retired_keys_still_works(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant)
        old = {**plan.config, "model": "implicit_matrix_factorization_v1",
               "serving": {"candidates": 1000, "fallbacks": ["popularity"]}}
        TrainingPlan.objects.filter(pk=plan.pk).update(config=old)
    client = tenant_a.client()
    assert "serving" not in client.get(f"/api/v1/plans/{plan.pk}").json()["config"]
    response = client.patch(f"/api/v1/plans/{plan.pk}", {"config": {"schedule": "0 3 * * *"}},
                            format="json")
    assert response.status_code == 200, response.json()
    with tenant_a.scope():
        stored = TrainingPlan.objects.get(pk=plan.pk).config
    # The old serving keys are gone; the section is today's (exploration off).
    assert "model" not in stored and stored["serving"] == {"exploration": None}
    assert stored["schedule"] == "0 3 * * *"


def test_retired_keys_are_ignored_by_training_code_reading_a_revision(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant)
        revision = PlanRevision.objects.get(plan=plan)
    old = {**revision.config, "model": "x", "serving": {"candidates": 5}}
    assert validate_plan_config({k: v for k, v in old.items()
                                 if k not in ("model", "serving")}) == revision.config


def test_deleting_a_plan_with_runs_is_a_409_and_keeps_it(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant)
        make_run(plan)
    response = tenant_a.client().delete(f"/api/v1/plans/{plan.pk}")
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "protected" and "training runs" in response.json()["detail"]
    with tenant_a.scope():
        assert TrainingPlan.objects.filter(pk=plan.pk).exists()


def test_creating_a_serving_plan_takes_over_serving(tenant_a):
    first = _create(tenant_a, {}, name="first").json()
    assert first["is_serving"] is True
    second = _create(tenant_a, {}, name="second", is_serving=True)
    assert second.status_code == 201, second.json()
    assert second.json()["is_serving"] is True
    with tenant_a.scope():
        serving = list(TrainingPlan.objects.filter(is_serving=True).values_list("name", flat=True))
    assert serving == ["second"]


@pytest.mark.parametrize("training", [
    {"strategy": "als", "regularization": "auto"},
    {"strategy": "als", "regularization": 0.05},
    {"strategy": "als", "regularization": 0.3, "regularization_scaling": "count"},
    {"strategy": "als", "regularization": 0.1, "regularization_scaling": "singular_value"},
    {"strategy": "als", "regularization": "auto", "regularization_scaling": "none"},
])
def test_als_penalty_values_are_accepted_as_given(tenant_a, training):
    response = _create(tenant_a, {"training": training})
    assert response.status_code == 201, response.json()
    stored = response.json()["config"]["training"]
    assert {k: stored[k] for k in training} == training


@pytest.mark.parametrize("training, message", [
    ({"strategy": "als", "regularization": "lots"}, "A valid number is required"),
    ({"strategy": "als", "regularization": -1}, "greater than or equal to 0"),
    ({"strategy": "bpr", "regularization": "auto"}, "does not have; give a number"),
    ({"strategy": "als", "regularization_scaling": "users"}, "is not a valid choice"),
    ({"strategy": "sgd", "regularization_scaling": "count"}, "unknown hyperparameter"),
])
def test_bad_penalty_values_are_a_400_naming_the_field(tenant_a, training, message):
    response = _create(tenant_a, {"training": training})
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]["config"]["training"]
    assert message in str(errors)
    if "unknown hyperparameter" not in message:
        assert ("regularization" in errors or "regularization_scaling" in errors), errors
    assert not TrainingPlan.objects.exists()


def test_tune_early_stopping_is_a_plan_option(tenant_a):
    config = validate_plan_config({"training": {"tune": {"trials": 6}}})
    assert config["training"]["tune"]["early_stopping"] is True
    config = validate_plan_config({"training": {"tune": {"early_stopping": False}}})
    assert config["training"]["tune"]["early_stopping"] is False
    response = _create(tenant_a, {"training": {"tune": {"early_stopping": "sometimes"}}})
    assert response.status_code == 400
    assert "early_stopping" in response.json()["errors"]["config"]["training"]["tune"]
