"""`training.tune`: a search inside the real run (tiny synthetic tenant, 3 trials), its trials
in the report and on the report page, the version trained with what the search kept; strict
validation of the option; no option, no search."""

from html import unescape

import pytest

from mfplatform.registry.report_page import render_report_html
from tests.factories import TEST_PLAN
from tests.training.test_pipeline import train

pytestmark = pytest.mark.django_db

TUNE = {"trials": 3, "time_budget_s": 60, "metric": "ndcg@10"}


def _plan(**training):
    return {**TEST_PLAN, "training": {**TEST_PLAN["training"], **training}}


def test_tune_on_reports_its_trials_and_trains_with_what_it_kept(tenant_a):
    # The plan's own values are crippled (a huge penalty): the search must beat them clearly.
    config = _plan(regularization=5000.0, tune=TUNE)
    _plan_row, run, version = train(tenant_a, config)
    assert run.status == "succeeded", run.error
    tuning = version.report["tuning"]
    assert tuning["metric"] == "ndcg@10"
    assert len(tuning["trials"]) == 3 and tuning["budget"]["trials_run"] == 3
    assert tuning["trials"][0]["params"] == {}  # the plan's values are trial 0
    assert all(t["score"] is not None and "regularization" in t["params"]
               for t in tuning["trials"][1:])
    planned = {k: v for k, v in config["training"].items() if k not in ("strategy", "tune")}
    assert tuning["defaults"]["params"] == {**planned, "random_state": 0}
    assert len(tuning["defaults"]["scores"]) == 3 and len(tuning["chosen"]["scores"]) == 3
    assert tuning["validation"]["kind"] == "temporal"
    assert tuning["validation"]["validation_users"] > 0
    # early stopping (on by default): 3 trials at a third of their iterations, the best in
    # full; every fit is counted, the confirmation refits included
    stopped = [t for t in tuning["trials"] if not t["final"]]
    assert len(stopped) == 2
    assert all(t["iterations"] < t["params"].get("iterations", 8) for t in stopped)
    assert tuning["budget"]["early_stopping"] is True
    assert tuning["budget"]["fits"] == tuning["fits"] >= 3 + 1 + 2
    assert tuning["kept"] is True, tuning
    assert tuning["gain"] > tuning["noise"]["margin"]
    # and again on the second carve-out (the events before the validation ones held out)
    confirmation = tuning["confirmation"]
    assert confirmation["passed"] is True and confirmation["n_users"] > 1
    assert confirmation["gain"] > confirmation["margin"] > 0 and confirmation["fits"] == 6
    assert "second carve-out" in tuning["noise"]["rule"]
    # the version's hyperparameters are the kept choice, and the model was fitted with them
    assert version.hyperparameters == tuning["chosen"]["params"] == tuning["hyperparameters"]
    assert version.hyperparameters["regularization"] != 5000.0
    assert "tune" not in version.hyperparameters

    with tenant_a.scope():
        html = render_report_html(version)
    assert '<h2 id="tuning">Tuning</h2>' in html
    assert html.count("<tr><td>") >= 3  # one row per trial
    assert "plan&#x27;s values" in html and "Kept:" in html
    assert html.count("stopped early (") == 2
    assert "second carve-out" in html
    assert tuning["noise"]["rule"] in unescape(html)


def test_tune_within_noise_keeps_the_plans_values(tenant_a, monkeypatch):
    # A search space whose one alternative is the plan's own configuration: nothing beats it.
    from mfengine import tuning

    monkeypatch.setitem(tuning.DEFAULT_SPACES, "als", {"factors": [16]})
    config = _plan(tune={**TUNE, "trials": 2, "metric": "recall@5"})
    _plan_row, run, version = train(tenant_a, config)
    assert run.status == "succeeded", run.error
    section = version.report["tuning"]
    assert section["kept"] is False and section["metric"] == "recall@5"
    assert section["confirmation"]["passed"] is False  # not run, or not passed
    planned = {k: v for k, v in config["training"].items() if k not in ("strategy", "tune")}
    assert version.hyperparameters == {**planned, "random_state": 0}
    with tenant_a.scope():
        assert "Not kept" in render_report_html(version)


def test_tune_off_runs_no_search(tenant_a):
    _plan_row, run, version = train(tenant_a, TEST_PLAN)
    assert run.status == "succeeded"
    assert "tuning" not in version.report
    planned = {k: v for k, v in TEST_PLAN["training"].items() if k != "strategy"}
    assert version.hyperparameters == {**planned, "random_state": 0}
    with tenant_a.scope():
        assert 'id="tuning"' not in render_report_html(version)


def _create(tenant_fixture, config):
    return tenant_fixture.client().post("/api/v1/plans", {"name": "main", "config": config},
                                        format="json")


def _error_at(response, path):
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]["config"]
    for key in path:
        errors = errors[key]
    return errors


@pytest.mark.parametrize("tune, path, words", [
    ({"trails": 3}, ["tune", "trails"], "unknown key"),
    ({"trials": 1}, ["tune", "trials"], "greater than or equal to 2"),
    ({"trials": 10_000}, ["tune", "trials"], "less than or equal to 200"),
    ({"time_budget_s": 0}, ["tune", "time_budget_s"], "greater than or equal to 1"),
    ({"metric": "auc@10"}, ["tune", "metric"], "metric one of"),
    ({"metric": "ndcg"}, ["tune", "metric"], "<metric>@<k>"),
])
def test_tune_option_is_validated_strictly(tenant_a, tune, path, words):
    errors = _error_at(_create(tenant_a, {"training": {"tune": tune}}), ["training", *path])
    assert words in str(errors), errors


def test_tune_metric_must_be_an_evaluated_k(tenant_a):
    config = {"evaluation": {"k": [5, 20]}, "promotion": {"metric": "ndcg@5"},
              "training": {"tune": {"metric": "ndcg@10"}}}
    errors = _error_at(_create(tenant_a, config), ["training", "tune", "metric"])
    assert "not evaluated" in errors[0]
    config["training"]["tune"]["metric"] = "map@20"
    response = _create(tenant_a, config)
    assert response.status_code == 201, response.json()
    tune = response.json()["config"]["training"]["tune"]
    assert tune == {"trials": 12, "time_budget_s": 600.0, "metric": "map@20",
                    "early_stopping": True}


def test_tune_needs_a_strategy_with_a_search_space(tenant_a):
    errors = _error_at(_create(tenant_a, {"training": {"strategy": "puresvd",
                                                       "tune": {"trials": 3}}}),
                       ["training", "tune"])
    assert "no search space" in str(errors)


def test_tune_is_turned_on_and_off_by_a_patch(tenant_a):
    plan_id = _create(tenant_a, {"training": {"factors": 8}}).json()["id"]
    client = tenant_a.client()
    on = client.patch(f"/api/v1/plans/{plan_id}",
                      {"config": {"training": {"tune": {"trials": 4}}}}, format="json")
    assert on.status_code == 200, on.json()
    assert on.json()["config"]["training"]["tune"]["trials"] == 4
    assert on.json()["config"]["training"]["factors"] == 8
    off = client.patch(f"/api/v1/plans/{plan_id}",
                       {"config": {"training": {"tune": None}}}, format="json")
    assert off.status_code == 200, off.json()
    assert off.json()["config"]["training"]["tune"] is None
