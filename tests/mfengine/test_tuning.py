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
        n_trials=4, base_params={"random_state": 0, "num_threads": 1}, halving_eta=None,
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
        halving_eta=None,
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
    from mfengine.keep_rule import tune_against_defaults

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
    # the paired test: mean per-user gain beyond 2 standard errors, over every validation user
    assert section["noise"]["k"] == 2.0
    assert section["gain"] > section["noise"]["margin"] == 2 * section["gain_se"] > 0
    assert section["noise"]["n_users"] == section["validation"]["validation_users"] > 0
    # the mean per-user difference is the difference of the mean scores (same users)
    assert section["gain"] == pytest.approx(
        section["chosen"]["score"] - section["defaults"]["score"], abs=1e-9)
    assert section["metric"] == "ndcg@10"
    json.dumps(section, allow_nan=False)  # plain, JSON-ready


def test_tune_against_defaults_keeps_the_defaults_within_noise(events):
    from mfengine.keep_rule import tune_against_defaults

    fit_m, val_m, _ = _matrices(events)
    defaults = {"factors": 8, "iterations": 8, "random_state": 0}
    # The alternatives are the defaults with other initial seeds: equal up to noise. The
    # luckiest draw beats the defaults' first fit (the winner's curse), yet the paired test
    # over users and seeds does not take it.
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults=defaults, space={"random_state": [1, 2, 3]},
        n_trials=4, metric="ndcg", k=10, halving_eta=None)
    assert section["chosen"]["trial"] != 0
    assert section["trials"][section["chosen"]["trial"]]["metrics"]["ndcg"] > (
        section["trials"][0]["score"])
    assert section["kept"] is False
    assert section["hyperparameters"] == defaults
    assert section["gain"] <= section["noise"]["margin"] == 2 * section["gain_se"]
    assert "standard errors" in section["noise"]["rule"]


def _columns(matrix, keep):
    import scipy.sparse as sp

    out = sp.csr_matrix(matrix @ sp.diags(keep.astype(np.float32)))
    out.eliminate_zeros()
    return out


def test_a_gain_on_one_carve_out_only_is_not_kept(events):
    from mfengine.keep_rule import tune_against_defaults

    fit_m, val_m, _ = _matrices(events)
    # A split-only gain: the first carve-out's validation positives are the 15 most popular
    # items, where one factor (a popularity ranking) beats 8 clearly; the second carve-out's
    # are the other items, where it loses. The first test alone keeps it, both do not.
    counts = np.asarray((fit_m > 0).sum(axis=0)).ravel()
    popular = np.zeros(fit_m.shape[1], dtype=bool)
    popular[np.argsort(-counts, kind="stable")[:15]] = True
    first, second = _columns(val_m, popular), _columns(val_m, ~popular)
    options = {"defaults": {"factors": 8, "iterations": 8, "random_state": 0},
               "space": {"factors": [1]}, "n_trials": 2, "halving_eta": None}
    alone = tune_against_defaults("als", fit_m, first, **options)
    assert alone["kept"] is True and alone["confirmation"] is None
    section = tune_against_defaults("als", fit_m, first, carve_out=(fit_m, second), **options)
    assert section["gain"] == alone["gain"] > section["noise"]["margin"]  # passed the first
    confirmation = section["confirmation"]
    assert confirmation["passed"] is False and section["kept"] is False
    assert confirmation["gain"] < 0 and confirmation["n_users"] > 1
    assert confirmation["fits"] == 6 and section["fits"] == alone["fits"] + 6
    assert section["hyperparameters"] == options["defaults"]
    assert "second carve-out" in section["noise"]["rule"]
    json.dumps(section, allow_nan=False)


def test_a_gain_on_both_carve_outs_is_kept_and_a_lost_first_test_skips_the_second(events):
    from mfengine.keep_rule import tune_against_defaults
    from mfengine.tuning import second_carve_out

    d = events
    fit_m, val_m, _ = _matrices(d)
    carve_out = second_carve_out(d.user_ids, d.item_ids, d.timestamps,
                                 shape=(d.n_users, d.n_items))
    assert carve_out[1].nnz and (carve_out[1] != val_m).nnz  # other held-out positives
    crippled = {"factors": 8, "regularization": 1e4, "iterations": 3, "random_state": 0}
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults=crippled, space={"regularization": [0.5]}, n_trials=2,
        halving_eta=None, carve_out=carve_out)
    assert section["confirmation"]["passed"] is True and section["kept"] is True
    assert section["confirmation"]["gain"] > section["confirmation"]["margin"] > 0
    # seeds only: the first test already fails, so the second is not run (no fits)
    defaults = {"factors": 8, "iterations": 8, "random_state": 0}
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults=defaults, space={"random_state": [1, 2, 3]},
        n_trials=4, halving_eta=None, carve_out=carve_out)
    assert section["kept"] is False and section["confirmation"]["fits"] == 0
    assert "skipped" in section["confirmation"]


@pytest.mark.parametrize("kind", ["temporal", "global"])
def test_second_carve_out_holds_out_the_events_before_the_validation_ones(events, kind):
    from mfengine.splits import earlier_band_mask, temporal_split_mask
    from mfengine.tuning import second_carve_out, validation_split

    d = events
    shape = (d.n_users, d.n_items)
    fit_m, val_m, info = validation_split(d.user_ids, d.item_ids, d.timestamps, shape=shape,
                                          validation=kind)
    fit2, val2 = second_carve_out(d.user_ids, d.item_ids, d.timestamps, shape=shape,
                                  validation=kind)
    first = (temporal_split_mask(d.user_ids, d.timestamps, 0.2, d.item_ids) if kind ==
             "temporal" else d.timestamps >= info["cutoff"])
    band = earlier_band_mask(d.user_ids, d.timestamps, first, 0.2, d.item_ids, kind)
    assert band.any() and not (band & first).any()  # disjoint from the first's held-out
    if kind == "global":  # the band ends where the first carve-out's events begin
        assert d.timestamps[band].max() <= d.timestamps[first].min()
    else:  # per user, the band comes before the validation events
        for user in np.unique(d.user_ids[band])[:20]:
            mine = d.user_ids == user
            if (first & mine).any():
                assert d.timestamps[band & mine].max() <= d.timestamps[first & mine].min()
    # fitted on everything but the band, the first carve-out's events included
    assert fit2.nnz > fit_m.nnz
    rows, cols = val2.nonzero()
    assert not np.asarray(fit2[rows, cols]).any()  # nothing held out is in the fit
    assert set(zip(*val2.nonzero(), strict=True)) <= set(
        zip(d.user_ids[band].tolist(), d.item_ids[band].tolist(), strict=True))
    assert val2.nnz > 0 and (val2 != val_m).nnz > 0


def test_tune_against_defaults_keep_threshold_is_a_parameter(events):
    from mfengine.keep_rule import tune_against_defaults

    fit_m, val_m, _ = _matrices(events)
    defaults = {"factors": 8, "regularization": 1e4, "iterations": 3, "random_state": 0}
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults=defaults, space={"regularization": [0.5]}, n_trials=2,
        keep_standard_errors=1e6, halving_eta=None)
    assert section["gain"] > 0 and section["kept"] is False  # a gain, not 10^6 errors' worth
    assert section["noise"]["margin"] == pytest.approx(1e6 * section["gain_se"])


def test_paired_gain():
    from mfengine.keep_rule import paired_gain

    out = paired_gain(np.array([0.5, 0.7, 0.9]), np.array([0.4, 0.5, 0.6]))
    assert out["mean"] == pytest.approx(0.2) and out["n_users"] == 3
    assert out["se"] == pytest.approx(np.std([0.1, 0.2, 0.3], ddof=1) / np.sqrt(3))
    assert paired_gain(np.ones(4), np.ones(4)) == {"mean": 0.0, "se": 0.0, "n_users": 4}


def test_search_stops_at_its_time_budget(events):
    from mfengine.tuning import search

    fit_m, val_m, _ = _matrices(events)
    seen = []
    result = search("als", fit_m, val_m, n_trials=20, time_budget_s=0.0, confirm_top=0,
                    base_params={"iterations": 2, "factors": 4}, callback=seen.append)
    assert len(result.trials) == 1 and seen == result.trials  # at least one, then the budget


def _counting_factory(log):
    """mfengine.create, recording the iterations of every model that is fitted."""

    def factory(name, **params):
        model = mfengine.create(name, **params)
        original = model.fit

        def fit(matrix, callback=None):
            log.append((tuple(sorted(k for k in params if k != "iterations")),
                        model.iterations))
            return original(matrix, callback)

        model.fit = fit
        return model

    return factory


def test_successive_halving_keeps_its_budget_of_fits(events):
    from mfengine.tuning import halving_rungs, search

    fit_m, val_m, _ = _matrices(events)
    fitted = []
    result = search("als", fit_m, val_m, space={"factors": [2, 4, 8, 16],
                                                "regularization": [0.1, 1.0, 10.0, 100.0]},
                    n_trials=9, halving_eta=3, confirm_top=1, confirm_seeds=1,
                    base_params={"iterations": 27, "random_state": 0},
                    factory=_counting_factory(fitted))
    assert halving_rungs(9, 3) == [9, 3, 1]
    # 9 fits at 3 iterations, the best 3 at 9, the best one at 27, then one confirmation refit
    assert [iterations for _, iterations in fitted] == [3] * 9 + [9] * 3 + [27] * 2
    assert result.fits == len(fitted) == 14
    assert [r["trials"] for r in result.rungs] == [9, 3, 1]
    finals = [t for t in result.trials if t["final"]]
    assert len(finals) == 1 and finals[0]["iterations"] == 27 and finals[0]["rung"] == 2
    assert result.best_score == finals[0]["score"]
    assert result.best_params == {"iterations": 27, "random_state": 0, **finals[0]["params"]}
    # the trials stopped at the first rung were fitted once, with a ninth of the iterations
    stopped = [t for t in result.trials if t["rung"] == 0]
    assert len(stopped) == 6 and all(t["iterations"] == 3 for t in stopped)


def test_halving_is_off_when_there_are_too_few_iterations_to_cut(events):
    from mfengine.tuning import search

    fit_m, val_m, _ = _matrices(events)
    fitted = []
    result = search("als", fit_m, val_m, space={"regularization": [0.1, 1.0, 10.0]},
                    n_trials=3, confirm_top=0, base_params={"iterations": 3, "factors": 4},
                    factory=_counting_factory(fitted))
    assert [iterations for _, iterations in fitted] == [3, 3, 3]
    assert all(t["final"] for t in result.trials) and result.rungs[0]["eta"] is None


def test_tune_against_defaults_counts_every_fit(events):
    from mfengine.keep_rule import tune_against_defaults

    fit_m, val_m, _ = _matrices(events)
    fitted = []
    section = tune_against_defaults(
        "als", fit_m, val_m, defaults={"factors": 4, "iterations": 12, "random_state": 0},
        space={"regularization": [0.1, 1.0, 10.0, 100.0]}, n_trials=4, metric="ndcg", k=10,
        factory=_counting_factory(fitted))
    assert section["fits"] == len(fitted)
    # 4 + 2 + 1 rung fits (4, 4 and 12 iterations), two more seeds for the chosen trial, and
    # the defaults at full iterations over three seeds (two when trial 0 reached the last
    # rung, none when it was itself the confirmed one)
    assert [r["trials"] for r in section["rungs"]] == [4, 2, 1]
    assert len(fitted) in (7 + 2, 7 + 2 + 2, 7 + 2 + 3)
    assert sorted({iterations for _, iterations in fitted}) == [3, 4, 12]
    assert len(section["defaults"]["scores"]) == 3 == len(section["chosen"]["scores"])
    json.dumps(section, allow_nan=False)


def test_trial_fits_skip_the_training_loss(events):
    from mfengine.tuning import search

    fit_m, val_m, _ = _matrices(events)
    models = []

    def factory(name, **params):
        models.append(mfengine.create(name, **params))
        return models[-1]

    result = search("als", fit_m, val_m, space={"factors": [4, 8]}, n_trials=2, confirm_top=0,
                    base_params={"iterations": 3}, factory=factory, halving_eta=None)
    fitted = [m for m in models if hasattr(m, "loss_history_")]
    assert len(fitted) == 2
    assert all(np.isnan(m.loss_history_).all() for m in fitted)  # no loss was computed
    assert "calculate_training_loss" not in result.best_params  # the choice is untouched
