"""Warm start: a fit that starts from another model's factors (the pipeline's full-data refit
from its evaluation model)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mfengine
from mfengine.testing import ndcg_at_k, planted_split


def _subset(matrix: sp.csr_matrix, keep: float, seed: int) -> sp.csr_matrix:
    """`matrix` with a random `keep` share of its entries, same shape (the earlier data)."""
    coo = matrix.tocoo()
    kept = np.random.default_rng(seed).random(coo.nnz) < keep
    return sp.csr_matrix((coo.data[kept], (coo.row[kept], coo.col[kept])), shape=matrix.shape)


def _ndcg(model, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(users, train, n=10)
    return ndcg_at_k(ids, test[users], 10)


def _als(iterations: int, seed: int = 0):
    return mfengine.create("als", factors=16, iterations=iterations, random_state=seed,
                           num_threads=1)


def test_als_warm_start_from_a_model_of_most_of_the_data_matches_a_cold_fit_in_few_iterations():
    train, test = planted_split()
    earlier = _subset(train, 0.8, seed=1)
    base = _als(15).fit(earlier)
    cold = _als(15).fit(train)
    warm = _als(2).fit(train, initial_item_factors=base.item_factors_,
                       initial_user_factors=base.user_factors_)
    cold_short = _als(2).fit(train)
    assert _ndcg(warm, train, test) >= _ndcg(cold, train, test) - 0.01
    # The start is what makes two iterations enough: from random factors they are not.
    assert warm.loss_history_[-1] < cold_short.loss_history_[-1]
    assert warm.loss_history_[-1] <= cold.loss_history_[-1] * 1.02


def test_warm_start_takes_the_given_rows_and_keeps_the_cold_start_for_zero_rows():
    train, _ = planted_split()
    start = _als(0).fit(train)  # no iteration: the random start itself
    items = np.random.default_rng(5).standard_normal(start.item_factors_.shape).astype(np.float32)
    items[3] = 0.0  # an item the earlier model had no data for
    warm = _als(0).fit(train, initial_item_factors=items)
    np.testing.assert_array_equal(warm.item_factors_[4:], items[4:])
    np.testing.assert_array_equal(warm.item_factors_[3], start.item_factors_[3])
    np.testing.assert_array_equal(warm.user_factors_, start.user_factors_)


def test_warm_start_rejects_factors_of_another_shape_or_non_finite():
    train, _ = planted_split()
    model = _als(1)
    with pytest.raises(ValueError, match="initial_item_factors has shape"):
        model.fit(train, initial_item_factors=np.ones((train.shape[1] + 1, 16), np.float32))
    bad = np.ones((train.shape[0], 16), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="initial_user_factors contains NaN"):
        model.fit(train, initial_user_factors=bad)


@pytest.mark.parametrize("strategy", ["bpr", "sgd"])
def test_a_strategy_without_warm_start_fits_cold(strategy):
    train, _ = planted_split()
    params = {"factors": 8, "iterations": 3, "random_state": 0}
    cold = mfengine.create(strategy, **params).fit(train)
    given = mfengine.create(strategy, **params).fit(
        train, initial_item_factors=np.ones((train.shape[1], 8), np.float32))
    assert not given.supports_warm_start
    np.testing.assert_array_equal(given.item_factors_, cold.item_factors_)
