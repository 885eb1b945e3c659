"""BPR fold-in with sampled negatives: about as good as the exact objective, reproducible,
and its work independent of the catalogue's size (the cost bound itself is the conformance
suite's `test_fold_in_cost_is_bounded_like_als`)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

import mfengine
from mfengine.bpr import FOLD_IN_NEGATIVES, _fold_in_pairs
from mfengine.synthetic import generate


def exact_fold_in(model, ids: np.ndarray, steps: int = 30) -> np.ndarray:
    """The previous implementation, the yardstick: Newton over every (positive, negative)
    pair of the catalogue, a dense positives x negatives matrix per step."""
    k = model.n_factors_
    x = np.zeros(k)
    Y, bias = model.item_factors_.astype(np.float64), model.item_bias_.astype(np.float64)
    negative = np.ones(model.n_items_, dtype=bool)
    negative[ids] = False
    Yp, Yn, bp, bn = Y[ids], Y[negative], bias[ids], bias[negative]
    pairs = ids.size * Yn.shape[0]
    for _ in range(steps):
        diff = (Yp @ x + bp)[:, None] - (Yn @ x + bn)[None, :]
        g = 0.5 * (1.0 - np.tanh(0.5 * diff))
        w = g * (1.0 - g)
        gradient = (Yp.T @ g.sum(1) - Yn.T @ g.sum(0)) / pairs - 2 * model.regularization * x
        cross = Yp.T @ w @ Yn
        hessian = ((Yp.T * w.sum(1)) @ Yp + (Yn.T * w.sum(0)) @ Yn - cross - cross.T) / pairs
        step = np.linalg.solve(hessian + 2 * model.regularization * np.eye(k), gradient)
        x += step
        if np.abs(step).max() < 1e-6:
            break
    return x.astype(np.float32)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """32-factor products are too small to share: a second BLAS thread only spins, and on a
    busy 2-core machine that made the exact yardstick ~10x slower."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@functools.cache
def trained() -> tuple[mfengine.MatrixFactorization, sp.csr_matrix, sp.csr_matrix]:
    """BPR on 1,200 items (more than twice the sampled negatives, so the sample is a minority
    of them) with a random 20% held out."""
    data = generate(n_users=600, n_items=1200, n_interactions=24_000, n_clusters=10, seed=4)
    matrix = data.to_csr()
    matrix.data[:] = 1.0
    coo = matrix.tocoo()
    held_out = np.random.default_rng(0).random(coo.nnz) < 0.2
    train = sp.csr_matrix((coo.data[~held_out], (coo.row[~held_out], coo.col[~held_out])),
                          shape=matrix.shape)
    test = sp.csr_matrix((coo.data[held_out], (coo.row[held_out], coo.col[held_out])),
                         shape=matrix.shape)
    model = mfengine.create("bpr", factors=32, iterations=30, random_state=0).fit(train)
    return model, train, test


def recall_at(model, vectors, users, train, test, n: int = 20) -> float:
    values = []
    for vector, user in zip(vectors, users, strict=True):
        ids, _ = model.recommend_vectors(vector, n=n, seen=train[user])
        relevant = test[user].indices
        values.append(np.isin(ids, relevant).sum() / min(n, relevant.size))
    return float(np.mean(values))


def test_sampled_fold_in_ranks_held_out_items_like_the_exact_one() -> None:
    model, train, test = trained()
    users = [u for u in range(0, train.shape[0], 4) if train[u].nnz >= 5 and test[u].nnz][:150]
    assert len(users) >= 100
    # sampled: the negatives drawn are fewer than half of those the exact objective sums over
    assert all(model.n_items_ - train[u].nnz > 2 * FOLD_IN_NEGATIVES for u in users)
    sampled = [model.fold_in(train[u].indices) for u in users]
    exact = [exact_fold_in(model, train[u].indices) for u in users]
    ours = recall_at(model, sampled, users, train, test)
    reference = recall_at(model, exact, users, train, test)
    assert ours >= 0.95 * reference, (ours, reference)
    cosine = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(sampled, exact,
                                                                           strict=True)]
    assert np.mean(cosine) >= 0.97, np.mean(cosine)


def test_fold_in_is_reproducible_and_seeded() -> None:
    model, train, _ = trained()
    ids = train[7].indices
    first = model.fold_in(ids)
    np.testing.assert_array_equal(first, model.fold_in(ids))
    np.testing.assert_array_equal(first, model.fold_in(ids[::-1]))  # order does not matter
    other = model.fold_in(ids, random_state=1)
    assert not np.array_equal(first, other)
    assert other @ first / (np.linalg.norm(other) * np.linalg.norm(first)) > 0.95


def test_small_catalogue_uses_every_negative_exactly() -> None:
    model, train, _ = trained()
    ids = train[3].indices
    everything = model.fold_in(ids, negatives=model.n_items_)
    np.testing.assert_allclose(everything, exact_fold_in(model, ids), atol=1e-5)


def test_negatives_are_uniform_over_the_complement_of_the_positives() -> None:
    rng = np.random.default_rng(0)
    positives = np.array([0, 1, 5, 6, 7, 19])
    counts = np.zeros(20)
    for _ in range(2000):
        kept, negatives = _fold_in_pairs(positives, 20 - positives.size, 5, rng)
        np.testing.assert_array_equal(kept, positives)
        assert negatives.size == 5 and np.unique(negatives).size == 5
        counts[negatives] += 1
    assert counts[positives].sum() == 0
    others = np.setdiff1d(np.arange(20), positives)
    expected = 2000 * 5 / others.size
    assert np.all(np.abs(counts[others] - expected) < 0.15 * expected), counts
    # all of them when there are no more than asked for
    _, every = _fold_in_pairs(positives, 14, 50, rng)
    np.testing.assert_array_equal(every, others)


def test_pairs_held_at_once_are_capped_for_heavy_users() -> None:
    from mfengine.bpr import _MAX_FOLD_IN_PAIRS

    rng = np.random.default_rng(0)
    positives = np.arange(0, 200_000, 4)  # 50,000 positives
    kept, negatives = _fold_in_pairs(positives, 150_000, 512, rng)
    assert kept.size * negatives.size <= _MAX_FOLD_IN_PAIRS
    assert np.isin(kept, positives).all() and not np.isin(negatives, positives).any()
