"""Conformance suite every strategy, built-in or plugin, must pass.

Use it from a pytest module by subclassing with the strategy's name::

    from mfengine.testing import StrategyConformance

    class TestMyStrategy(StrategyConformance):
        strategy_name = "mystrategy"
        hyperparameters = {"factors": 16, "iterations": 10}

Override :meth:`StrategyConformance.make_model` for a strategy that is not registered.
Data is small and synthetic (planted taste clusters), so the whole suite runs in seconds.
"""

from __future__ import annotations

import copy
import functools
import tracemalloc
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from mfengine.base import MatrixFactorization, NonFiniteFactorsError, NotFittedError, load
from mfengine.plugins import available, create
from mfengine.sides import load_item_side, load_sides, save_item_side, save_user_side
from mfengine.synthetic import generate


@functools.cache
def planted_split(ratings: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, test) users x items matrices: a random 20% of the (user, item) pairs is test.

    On rating data the test holds every held-out rating; ratings >= 4 are the relevant ones.
    """
    data = generate(
        n_users=400, n_items=200, n_interactions=12000, n_clusters=5, ratings=ratings, seed=7
    )
    matrix = data.to_csr()
    if ratings:
        # Repeated events of a pair summed above; a pair keeps one rating (the mean).
        counts = sp.csr_matrix(
            (np.ones(data.values.size, np.float32), (data.user_ids, data.item_ids)),
            shape=matrix.shape,
        )
        matrix.data = np.rint(matrix.data / counts.tocsr().data).astype(np.float32)
    coo = matrix.tocoo()
    rng = np.random.default_rng(3)
    is_test = rng.random(coo.nnz) < 0.2
    train = sp.csr_matrix(
        (coo.data[~is_test], (coo.row[~is_test], coo.col[~is_test])), shape=matrix.shape
    )
    test = sp.csr_matrix(
        (coo.data[is_test], (coo.row[is_test], coo.col[is_test])), shape=matrix.shape
    )
    return train, test


def ndcg_at_k(recommended: np.ndarray, test: sp.csr_matrix, k: int = 10) -> float:
    """Mean binary NDCG@k over users with >= 1 test item (row i of recommended = user i)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for user in range(test.shape[0]):
        relevant = test.indices[test.indptr[user] : test.indptr[user + 1]]
        if relevant.size == 0:
            continue
        hits = np.isin(recommended[user, :k], relevant)
        ideal = discounts[: min(k, relevant.size)].sum()
        values.append(float((hits * discounts[: hits.size]).sum() / ideal))
    return float(np.mean(values))


def with_catalogue(model: MatrixFactorization, n_items: int) -> MatrixFactorization:
    """A copy of a fitted ``model`` whose item-side arrays (every state array with one row per
    item, the user factors aside) are tiled to ``n_items`` rows: a large catalogue for cost
    checks without fitting one."""
    big = copy.copy(model)
    n = model.n_items_
    reps = -(-n_items // n)
    for name in model._state_arrays:
        array = getattr(model, name)
        if name == "user_factors_" or np.ndim(array) == 0 or array.shape[0] != n:
            continue
        tiled = np.tile(array, (reps,) + (1,) * (array.ndim - 1))[:n_items]
        setattr(big, name, np.ascontiguousarray(tiled))
    return big


def fold_in_peak_bytes(model: MatrixFactorization, item_ids: np.ndarray) -> int:
    """Peak bytes traced (tracemalloc; numpy reports its buffers) while ``model`` folds in one
    user who interacted with ``item_ids``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        model.fold_in(item_ids)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _top_overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(set(a.tolist()) & set(b.tolist())) / max(len(a), 1)


class StrategyConformance:
    """Mixin of pytest tests; set ``strategy_name`` (and ``hyperparameters``)."""

    strategy_name: ClassVar[str] = ""
    #: Small, fast settings used for every test; ``random_state`` is set by the tests.
    hyperparameters: ClassVar[dict[str, Any]] = {}
    #: True for explicit-rating strategies: they train on 1..5 ratings.
    ratings: ClassVar[bool] = False
    #: Required mean top-10 overlap between folded-in and learned users.
    fold_in_overlap: ClassVar[float] = 0.7
    #: Required NDCG@10 ratio over popularity on the planted data.
    planted_margin: ClassVar[float] = 1.2

    def make_model(self, **overrides: Any) -> MatrixFactorization:
        params = {**self.hyperparameters, "random_state": 0, **overrides}
        return create(self.strategy_name, **params)

    def train_test(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        return planted_split(self.ratings)

    def fitted(self, **overrides: Any) -> MatrixFactorization:
        train, _ = self.train_test()
        return self.make_model(**overrides).fit(train)

    # -- interface ---------------------------------------------------------------------------
    def test_registered(self) -> None:
        assert self.strategy_name in available()

    def test_init_stores_hyperparameters_only(self) -> None:
        model = self.make_model()
        params = model.get_params()
        for name in ("factors", "iterations", "random_state"):
            assert name in params
        assert params["random_state"] == 0
        learned = [name for name in vars(model) if name.endswith("_")]
        assert learned == []
        with np.testing.assert_raises(NotFittedError):
            model.recommend([0], None, filter_seen=False)
        with np.testing.assert_raises(NotFittedError):
            model.similar_items([0])

    def test_unknown_hyperparameter_is_named(self) -> None:
        try:
            create(self.strategy_name, no_such_knob=1)
        except (TypeError, ValueError) as error:
            assert "no_such_knob" in str(error)
        else:
            raise AssertionError("an unknown hyperparameter was accepted")

    def test_fit_returns_self_with_float32_factors(self) -> None:
        train, _ = self.train_test()
        model = self.make_model()
        assert model.fit(train) is model
        k = model.get_params()["factors"]
        assert model.user_factors_.shape == (train.shape[0], k)
        assert model.item_factors_.shape == (train.shape[1], k)
        assert model.user_factors_.dtype == np.float32
        assert model.item_factors_.dtype == np.float32
        assert len(model.loss_history_) == model.get_params()["iterations"]

    def test_fit_does_not_modify_input(self) -> None:
        train, _ = self.train_test()
        before = train.copy()
        self.make_model().fit(train)
        assert (train != before).nnz == 0

    def test_callback_called_every_iteration(self) -> None:
        train, _ = self.train_test()
        calls: list[tuple[int, float]] = []
        model = self.make_model()
        model.fit(train, callback=lambda iteration, loss: calls.append((iteration, loss)))
        iterations = model.get_params()["iterations"]
        assert [c[0] for c in calls] == list(range(iterations))
        assert all(isinstance(c[1], float) for c in calls)
        np.testing.assert_array_equal([c[1] for c in calls], model.loss_history_)

    def test_same_seed_same_factors(self) -> None:
        first, second = self.fitted(random_state=11), self.fitted(random_state=11)
        np.testing.assert_array_equal(first.user_factors_, second.user_factors_)
        np.testing.assert_array_equal(first.item_factors_, second.item_factors_)
        other = self.fitted(random_state=12)
        assert not np.array_equal(first.item_factors_, other.item_factors_)

    def test_generator_random_state(self) -> None:
        a = self.fitted(random_state=np.random.default_rng(5))
        b = self.fitted(random_state=np.random.default_rng(5))
        np.testing.assert_array_equal(a.item_factors_, b.item_factors_)

    def test_nonfinite_factors_raise(self) -> None:
        train, _ = self.train_test()
        model = self.make_model(iterations=2)

        def poison(iteration: int, loss: float) -> None:
            model.item_factors_[0, 0] = np.nan

        with np.testing.assert_raises(NonFiniteFactorsError):
            model.fit(train, callback=poison)
        # a diverged fit leaves no model that could be served
        with np.testing.assert_raises(NotFittedError):
            model.recommend([0], train)

    # -- recommend -------------------------------------------------------------------------
    def test_recommend_never_returns_seen_or_excluded(self) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        users = np.arange(0, train.shape[0], 7)
        exclude = np.arange(0, 20)
        ids, scores = model.recommend(users, train, n=15, exclude=exclude)
        assert ids.shape == scores.shape == (users.size, 15)
        for row, user in enumerate(users):
            seen = set(train[user].indices.tolist())
            assert not seen & set(ids[row].tolist())
            assert not set(exclude.tolist()) & set(ids[row].tolist())
            # enough candidates remain, so n come back, distinct and best first
            assert (ids[row] >= 0).all() and len(set(ids[row].tolist())) == 15
            assert np.all(np.diff(scores[row]) <= 0)

    def test_recommend_scores_match_score(self) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        ids, scores = model.recommend([3], train, n=5)
        expected = model.score(model.user_factors_[3], ids[0])[0]
        np.testing.assert_allclose(scores[0], expected, rtol=1e-5, atol=1e-5)
        full = model.score(model.user_factors_[3])[0]
        unseen = np.setdiff1d(np.arange(train.shape[1]), train[3].indices)
        assert scores[0][0] == np.float32(full[unseen].max())

    def test_recommend_pads_when_few_candidates_remain(self) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        candidates = np.setdiff1d(np.arange(train.shape[1]), train[0].indices)[:4]
        ids, scores = model.recommend(0, train, n=10, items=candidates)
        assert ids.shape == (10,)
        assert set(ids[:4].tolist()) == set(candidates.tolist())
        assert (ids[4:] == -1).all() and np.isneginf(scores[4:]).all()
        assert np.isfinite(scores[:4]).all()

    def test_recommend_items_subset(self) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        subset = np.arange(50, 120)
        ids, _ = model.recommend([1, 2], train, n=10, items=subset)
        assert np.isin(ids, subset).all()
        ids, _ = model.recommend([1, 2], train, n=10, filter_seen=False)
        assert (ids >= 0).all()

    def test_recommend_vectors_matches_recommend(self) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        users = np.array([4, 9])
        ids, scores = model.recommend(users, train, n=8)
        ids2, scores2 = model.recommend_vectors(
            model.user_factors_[users], n=8, seen=train[users]
        )
        np.testing.assert_array_equal(ids, ids2)
        np.testing.assert_allclose(scores, scores2)
        # the exported vectors rank exactly like score(): ready for an inner-product index
        exported = model.user_vectors(model.user_factors_[users]) @ model.item_vectors().T
        np.testing.assert_allclose(exported, model.score(model.user_factors_[users]), atol=1e-4)

    def test_similar_items(self) -> None:
        model = self.fitted()
        ids, scores = model.similar_items([5, 6], n=10)
        assert ids.shape == (2, 10)
        assert 5 not in ids[0] and 6 not in ids[1]
        assert np.all(np.diff(scores, axis=1) <= 1e-6)
        assert np.all(scores <= 1.0 + 1e-5)

    # -- artifacts ---------------------------------------------------------------------------
    def test_save_load_round_trip(self, tmp_path: Any) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        path = tmp_path / "model.npz"
        model.save(path)
        # the artifact is plain arrays: loading never needs pickle
        with np.load(path, allow_pickle=False) as archive:
            assert "user_factors_" in archive.files
        restored = load(path)
        assert type(restored) is type(model)
        assert restored.get_params() == model.get_params()
        np.testing.assert_array_equal(restored.item_factors_, model.item_factors_)
        np.testing.assert_array_equal(restored.loss_history_, model.loss_history_)
        users = np.arange(10)
        a = model.recommend(users, train, n=10)
        b = restored.recommend(users, train, n=10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        metadata = restored.metadata()
        assert metadata["strategy"] == self.strategy_name
        assert metadata["n_items"] == train.shape[1]

    def test_item_and_user_sides_rejoin_and_the_item_side_serves_alone(self,
                                                                      tmp_path: Any) -> None:
        model = self.fitted()
        model.save(tmp_path / "whole.npz")
        save_item_side(model, tmp_path / "items.npz")
        save_user_side(model, tmp_path / "users.npz")
        joined = load_sides(tmp_path / "items.npz", tmp_path / "users.npz")
        for name in model._state_arrays:
            np.testing.assert_array_equal(getattr(joined, name), getattr(model, name))
        vectors = model.user_factors_[:10]
        expected = model.recommend_vectors(vectors, n=10)
        # The item side alone, from its own file or from the whole model's, scores alike.
        for path in ("items.npz", "whole.npz"):
            items = load_item_side(tmp_path / path)
            assert items.n_users_ == 0 and items.n_items_ == model.n_items_
            np.testing.assert_array_equal(items.item_vectors(), model.item_vectors())
            np.testing.assert_array_equal(items.recommend_vectors(vectors, n=10)[0],
                                          expected[0])

    # -- quality -----------------------------------------------------------------------------
    def test_fold_in_recovers_ranking(self) -> None:
        train, _ = self.train_test()
        model = self.fitted()
        overlaps = []
        for user in range(0, 60, 3):
            row = train[user]
            if row.nnz < 5:
                continue
            vector = model.fold_in(row.indices, row.data)
            assert vector.dtype == np.float32 and vector.shape == (model.n_factors_,)
            learned, _ = model.recommend(user, train, n=10)
            folded, _ = model.recommend_vectors(vector, n=10, seen=row)
            overlaps.append(_top_overlap(learned, folded))
        assert len(overlaps) >= 5
        assert np.mean(overlaps) >= self.fold_in_overlap, overlaps


    #: Catalogue size of the fold-in cost check (items are tiled copies of the fitted ones).
    cost_items: ClassVar[int] = 100_000

    def test_fold_in_cost_is_bounded_like_als(self) -> None:
        """Serving and the promotion gate fold users in per request: one call may cost about
        what ALS's costs (O(items x factors): ALS's first call copies the item factors to
        float64 once), never O(positives x items). Memory is the measure, not time: a dense
        positives x items float64 matrix at 800 positives and 100k items is 640 MB."""
        model = with_catalogue(self.fitted(), self.cost_items)
        k = model.n_factors_
        als = create("als", factors=k, regularization=1.0)  # a number: no fit to scale by
        als.user_factors_ = np.zeros((1, k), np.float32)
        als.item_factors_ = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
        rng = np.random.default_rng(0)
        for positives in (50, 800):
            ids = np.sort(rng.choice(self.cost_items, positives, replace=False))
            reference = fold_in_peak_bytes(copy.copy(als), ids)
            peak = fold_in_peak_bytes(model, ids)
            assert reference >= self.cost_items * k * 8  # the yardstick measures what it says
            assert peak <= 4 * reference + (1 << 20), (positives, peak, reference)

    def test_learns_planted_structure(self) -> None:
        if self.ratings:
            self._check_planted_ratings()
            return
        train, test = self.train_test()
        model = self.fitted()
        users = np.arange(train.shape[0])
        ids, _ = model.recommend(users, train, n=10)
        popularity = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float32)
        masked = np.where(train.toarray() != 0, -np.inf, popularity[None, :])
        popular = np.argsort(-masked, axis=1, kind="stable")[:, :10]
        ours, baseline = ndcg_at_k(ids, test), ndcg_at_k(popular, test)
        assert ours >= self.planted_margin * baseline, (ours, baseline)

    def _check_planted_ratings(self) -> None:
        """Explicit strategies rank each user's held-out rated items: relevant = rating >= 4.

        Which items a user rates is not what a rating model learns, so the candidates are the
        rated items themselves, ranked by the model and by popularity.
        """
        train, test = self.train_test()
        model = self.fitted()
        popularity = np.asarray((train != 0).sum(axis=0)).ravel()
        ours, baseline = [], []
        relevant = test.multiply(test >= 4).tocsr()
        relevant.eliminate_zeros()
        for user in range(train.shape[0]):
            candidates = test[user].indices
            if relevant[user].nnz == 0 or candidates.size <= relevant[user].nnz:
                continue
            ids, _ = model.recommend(user, train, n=10, items=candidates)
            popular = candidates[np.argsort(-popularity[candidates], kind="stable")][:10]
            popular = np.pad(popular, (0, 10 - popular.size), constant_values=-1)
            ours.append(ndcg_at_k(ids[None, :], relevant[user]))
            baseline.append(ndcg_at_k(popular[None, :], relevant[user]))
        assert len(ours) >= 50
        assert np.mean(ours) >= self.planted_margin * np.mean(baseline), (
            np.mean(ours), np.mean(baseline)
        )


def reference_top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense top-n by full sort, the yardstick for the engine's top-n kernels: score
    descending, then lower id; -inf/NaN never returned; a +inf keeps its slot as -1 / -inf;
    short rows padded with -1 / -inf."""
    rows, cols = scores.shape
    ids = np.full((rows, n), -1, dtype=np.int64)
    out = np.full((rows, n), -np.inf, dtype=np.float32)
    for r in range(rows):
        cand = np.flatnonzero(scores[r] > -np.inf)
        order = cand[np.lexsort((cand, -scores[r][cand]))][: min(n, cols)]
        for slot, item in enumerate(order):
            if np.isfinite(scores[r, item]):
                ids[r, slot] = item
                out[r, slot] = scores[r, item]
    return ids, out


def _raises(*args: Any, **kwargs: Any) -> Any:
    import pytest

    return pytest.raises(*args, **kwargs)


class BaselineConformance:
    """What applies of :class:`StrategyConformance` to the baselines (and any other
    :class:`~mfengine.recommender.Recommender` without factors): fit returns self,
    validation errors, NotFittedError, save/load without pickle, determinism.

    Subclasses implement :meth:`make_model` and :meth:`fit_model` (a baseline's fit takes its
    own side data, e.g. item tokens)."""

    def make_model(self) -> Any:
        raise NotImplementedError

    def fit_model(self, model: Any, train: sp.csr_matrix) -> Any:
        return model.fit(train)

    def fitted(self) -> Any:
        train, _ = planted_split()
        return self.fit_model(self.make_model(), train)

    def test_fit_returns_self(self) -> None:
        train, _ = planted_split()
        model = self.make_model()
        assert self.fit_model(model, train) is model

    def test_not_fitted_raises(self) -> None:
        train, _ = planted_split()
        model = self.make_model()
        with _raises(NotFittedError):
            model.recommend([0], train)
        with _raises(ValueError):  # NotFittedError is a ValueError, as in scikit-learn
            model.save("unused.npz")

    def test_recommend_validates_its_input(self) -> None:
        train, _ = planted_split()
        model = self.fitted()
        with _raises(ValueError, match="filter_seen"):
            model.recommend([0], None, filter_seen=True)
        with _raises(ValueError, match="item columns"):
            model.recommend([0], train[:, :-1])
        with _raises(TypeError, match="user_ids"):
            model.recommend([0.5], train)

    def test_recommend_never_returns_seen(self) -> None:
        train, _ = planted_split()
        ids, _ = self.fitted().recommend(np.arange(20), train, n=10)
        for user, row in enumerate(ids):
            assert not set(row[row >= 0]) & set(train[user].indices)

    def test_same_data_same_recommendations(self) -> None:
        train, _ = planted_split()
        a = self.fitted().recommend(np.arange(20), train, n=10)
        b = self.fitted().recommend(np.arange(20), train, n=10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])

    def test_save_load_round_trip(self, tmp_path: Any) -> None:
        train, _ = planted_split()
        model = self.fitted()
        path = tmp_path / "baseline.npz"
        model.save(path)
        with np.load(path, allow_pickle=False) as archive:  # plain arrays: no pickle needed
            assert "__metadata__" in archive.files
        restored = type(model).load(path)
        assert restored.get_params() == model.get_params()
        a = model.recommend(np.arange(20), train, n=10)
        b = restored.recommend(np.arange(20), train, n=10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
