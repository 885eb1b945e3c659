"""Tuning picks the best of its own table and sees only the training period."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mfengine
from mfengine.synthetic import generate
from mfengine.tuning import tune


@pytest.fixture(scope="module")
def events():
    d = generate(300, 150, 9000, seed=2)
    return d


def test_tune_returns_best_of_its_table(events):
    d = events
    res = tune(
        "als", d.user_ids, d.item_ids, d.timestamps, shape=(d.n_users, d.n_items),
        space={"factors": [4, 16], "regularization": [0.05, 5.0], "iterations": [3]},
        n_trials=4, base_params={"random_state": 0, "num_threads": 1},
    )
    scores = [t["score"] for t in res.trials]
    assert len(res.trials) == 4
    assert res.best_score == max(scores)
    best = next(t for t in res.trials if t["score"] == res.best_score)
    assert res.best_params == {"random_state": 0, "num_threads": 1, **best["params"]}
    assert res.trials[0]["params"] == {}  # defaults are always tried
    assert all(t["fit_seconds"] >= 0 for t in res.trials)
    mfengine.create("als", **res.best_params)  # usable as is


def test_tune_sees_only_training_events(events):
    d = events
    cutoff = int(np.quantile(d.timestamps, 0.8))
    train = d.timestamps < cutoff
    test_pairs = set(zip(d.user_ids[~train].tolist(), d.item_ids[~train].tolist(), strict=True))
    train_pairs = set(zip(d.user_ids[train].tolist(), d.item_ids[train].tolist(), strict=True))
    only_test = test_pairs - train_pairs
    assert only_test  # the check below would be vacuous otherwise
    fitted = []

    def spy(name, **params):
        model = mfengine.create(name, **params)
        original = model.fit

        def fit(matrix, callback=None):
            fitted.append(matrix.copy())
            return original(matrix, callback)

        model.fit = fit
        return model

    res = tune(
        "als", d.user_ids[train], d.item_ids[train], d.timestamps[train],
        shape=(d.n_users, d.n_items), space={"factors": [4, 8], "iterations": [2]},
        n_trials=3, base_params={"random_state": 0}, factory=spy, confirm_top=1,
    )
    assert len(fitted) == 3 + 1  # trials + one confirmation fit
    for matrix in fitted:
        rows, cols = matrix.nonzero()
        pairs = set(zip(rows.tolist(), cols.tolist(), strict=True))
        assert pairs <= train_pairs
        assert not pairs & only_test
        # the validation part was carved out: fewer pairs than the whole training period
        assert len(pairs) < len(train_pairs)
    assert res.validation["kind"] == "temporal"


def test_global_validation_and_time_budget(events):
    d = events
    res = tune(
        "als", d.user_ids, d.item_ids, d.timestamps, shape=(d.n_users, d.n_items),
        space={"factors": [4], "iterations": [2]}, n_trials=5, validation="global",
        base_params={"random_state": 0}, time_budget_s=0.0, confirm_top=0,
    )
    assert len(res.trials) == 1  # budget spent after the first trial
    assert res.validation["cutoff"] <= int(d.timestamps.max())


def _matrices(d):
    from mfengine.tuning import validation_split

    return validation_split(d.user_ids, d.item_ids, d.timestamps, shape=(d.n_users, d.n_items))


def test_tune_against_defaults_keeps_a_clearly_better_choice(events):
    from mfengine.tuning import tune_against_defaults

    fit_m, val_m, _ = _matrices(events)
    # defaults crippled by a huge penalty: every trial of the space beats them clearly
    defaults = {"factors": 8, "regularization": 1e4, "iterations": 3, "random_state": 0}
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults=defaults, space={"regularization": [0.5, 5.0]},
        n_trials=3, metric="ndcg", k=10)
    assert len(section["trials"]) == 3 and section["trials"][0]["params"] == {}
    assert section["kept"] is True
    assert section["hyperparameters"]["regularization"] in (0.5, 5.0)
    assert section["hyperparameters"] == section["chosen"]["params"]
    assert len(section["defaults"]["scores"]) == 3 and len(section["chosen"]["scores"]) == 3
    assert section["gain"] > section["noise"]["margin"] >= 0
    assert section["metric"] == "ndcg@10"
    json.dumps(section, allow_nan=False)  # plain, JSON-ready


def test_tune_against_defaults_keeps_the_defaults_within_noise(events):
    from mfengine.tuning import tune_against_defaults

    fit_m, val_m, _ = _matrices(events)
    defaults = {"factors": 8, "iterations": 3, "random_state": 0}
    # the only alternative is the same configuration: no gain beyond noise is possible
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults=defaults, space={"factors": [8]}, n_trials=4,
        metric="recall", k=5)
    assert section["kept"] is False
    assert section["hyperparameters"] == defaults
    assert section["gain"] <= section["noise"]["margin"]
    assert "2 x std" in section["noise"]["rule"]


def test_search_stops_at_its_time_budget(events):
    from mfengine.tuning import search

    fit_m, val_m, _ = _matrices(events)
    seen = []
    result = search("als", fit_m, val_m, n_trials=20, time_budget_s=0.0, confirm_top=0,
                    base_params={"iterations": 2, "factors": 4}, callback=seen.append)
    assert len(result.trials) == 1 and seen == result.trials  # at least one, then the budget
