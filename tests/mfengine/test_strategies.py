"""The built-in strategies: conformance suite plus strategy-specific behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mfengine
from mfengine.als import ALS
from mfengine.base import NonFiniteFactorsError, NotFittedError
from mfengine.testing import StrategyConformance, planted_split, reference_top_n


class TestALS(StrategyConformance):
    strategy_name = "als"
    hyperparameters = {"factors": 16, "iterations": 8, "regularization": 0.1}


class TestALSCholesky(StrategyConformance):
    strategy_name = "als"
    hyperparameters = {"factors": 16, "iterations": 5, "solver": "cholesky"}


class TestBPR(StrategyConformance):
    strategy_name = "bpr"
    hyperparameters = {"factors": 16, "iterations": 40, "learning_rate": 0.05}


class TestSGD(StrategyConformance):
    strategy_name = "sgd"
    ratings = True
    hyperparameters = {"factors": 16, "iterations": 30}


def test_available_lists_builtins() -> None:
    assert {"als", "sgd", "bpr"} <= set(mfengine.available())


def test_create_unknown_strategy_lists_names() -> None:
    with pytest.raises(ValueError, match="als"):
        mfengine.create("no-such-strategy")


def test_shared_hyperparameter_names() -> None:
    # outside checks (tuning, the platform's plans) set these names on every strategy
    for name, extra in [("als", {"alpha": 3.0}), ("sgd", {"learning_rate": 0.01}),
                        ("bpr", {"learning_rate": 0.01})]:
        model = mfengine.create(
            name, factors=8, regularization=0.2, iterations=3, random_state=1, **extra
        )
        params = model.get_params()
        assert params["factors"] == 8 and params["iterations"] == 3
        assert params["regularization"] == 0.2


def test_als_cg_close_to_exact_solve() -> None:
    train, _ = planted_split()
    cg = ALS(factors=8, iterations=10, cg_steps=8, random_state=0).fit(train)
    exact = ALS(factors=8, iterations=10, solver="cholesky", random_state=0).fit(train)
    # both minimise the same objective from the same start
    assert abs(cg.loss_history_[-1] - exact.loss_history_[-1]) < 0.01 * exact.loss_history_[-1]
    # the loss of an exact ALS never increases
    assert np.all(np.diff(exact.loss_history_) <= 1e-6 * exact.loss_history_[0])


def test_als_fold_in_equals_exact_user_step() -> None:
    train, _ = planted_split()
    model = ALS(factors=8, iterations=4, solver="cholesky", random_state=0).fit(train)
    # one more exact user half-step with these item factors gives the fold-in solution
    model._solve_half(train, model.user_factors_, model.item_factors_,
                      model.row_penalties(train))
    for user in (0, 5, 17):
        row = train[user]
        np.testing.assert_allclose(
            model.fold_in(row.indices, row.data), model.user_factors_[user], atol=2e-4
        )


def test_als_fold_in_follows_a_refit() -> None:
    """Fold-in keeps Y^T Y between calls; a new fit must not leave the old one behind."""
    first, _ = planted_split()
    second = sp.csr_matrix(first[:, ::-1])  # the same users, their items renumbered
    model = ALS(factors=8, iterations=3, random_state=0).fit(first)
    before = model.fold_in([0, 3], [1.0, 2.0])
    model.fit(second)
    fresh = ALS(factors=8, iterations=3, random_state=0).fit(second)
    np.testing.assert_allclose(model.fold_in([0, 3], [1.0, 2.0]),
                               fresh.fold_in([0, 3], [1.0, 2.0]), rtol=1e-5)
    assert not np.allclose(before, fresh.fold_in([0, 3], [1.0, 2.0]))


def test_als_rejects_negative_strengths() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, -1.0], [0.0, 2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="negative"):
        ALS(factors=2, iterations=1).fit(matrix)


def test_input_with_nan_is_rejected() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, np.nan], [0.0, 2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        mfengine.create("bpr", factors=2, iterations=1).fit(matrix)


def test_users_without_events_get_zero_vectors() -> None:
    train, _ = planted_split()
    empty = sp.vstack([train, sp.csr_matrix((1, train.shape[1]), dtype=np.float32)]).tocsr()
    model = ALS(factors=8, iterations=2, random_state=0).fit(empty)
    assert not model.user_factors_[-1].any()


def test_sgd_predicts_ratings_better_than_the_mean() -> None:
    train, _ = planted_split(ratings=True)
    coo = train.tocoo()
    held = np.random.default_rng(0).random(coo.nnz) < 0.2
    fit_part = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), train.shape)
    model = mfengine.create("sgd", factors=16, iterations=30, random_state=0).fit(fit_part)
    predicted = model.predict(coo.row[held], coo.col[held])
    assert predicted.dtype == np.float32
    assert predicted.min() >= 1 and predicted.max() <= 5  # clipped to the seen range
    rmse = np.sqrt(np.mean((predicted - coo.data[held]) ** 2))
    baseline = np.sqrt(np.mean((coo.data[~held].mean() - coo.data[held]) ** 2))
    assert rmse < 0.9 * baseline


def test_sgd_divergence_raises_nonfinite_error() -> None:
    train, _ = planted_split(ratings=True)
    model = mfengine.create("sgd", factors=8, iterations=5, learning_rate=50.0, random_state=0)
    with pytest.raises(NonFiniteFactorsError, match="diverged"):
        model.fit(train)
    with pytest.raises(NotFittedError):
        model.predict([0], [0])


def test_similar_items_finds_same_cluster() -> None:
    data = mfengine.synthetic.generate(
        n_users=400, n_items=200, n_interactions=12000, n_clusters=5, seed=7
    )
    train, _ = planted_split()
    model = ALS(factors=16, iterations=8, random_state=0).fit(train)
    popular = np.argsort(-np.bincount(data.item_ids, minlength=200))[:20]
    ids, _ = model.similar_items(popular, n=5)
    same = data.item_clusters[ids] == data.item_clusters[popular][:, None]
    assert same.mean() > 0.6


def test_save_writes_single_npz_with_json_metadata(tmp_path) -> None:
    train, _ = planted_split()
    model = mfengine.create("bpr", factors=4, iterations=2, random_state=0).fit(train)
    path = tmp_path / "m.npz"
    model.save(path)
    metadata = mfengine.read_metadata(path)
    assert metadata["strategy"] == "bpr"
    assert metadata["hyperparameters"]["factors"] == 4
    assert metadata["mfengine_version"] == mfengine.__version__
    assert len(metadata["loss_history"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert isinstance(mfengine.MatrixFactorization.load(path), mfengine.get_strategy("bpr"))
    with pytest.raises(TypeError):
        ALS.load(path)


def test_save_into_a_stream_gives_the_same_bytes_as_a_file(tmp_path) -> None:
    """The platform stores artifacts through a storage API (a bucket, say), not a path."""
    import io

    train, _ = planted_split()
    model = ALS(factors=4, iterations=1, random_state=0).fit(train)
    model.save(tmp_path / "m.npz")
    stream = io.BytesIO()
    model.save(stream)
    assert stream.getvalue() == (tmp_path / "m.npz").read_bytes()
    stream.seek(0)
    np.testing.assert_array_equal(mfengine.load(stream).item_factors_, model.item_factors_)


def test_generator_state_is_saved_as_none(tmp_path) -> None:
    train, _ = planted_split()
    model = ALS(factors=4, iterations=1, random_state=np.random.default_rng(1)).fit(train)
    model.save(tmp_path / "m.npz")
    assert mfengine.load(tmp_path / "m.npz").random_state is None


def test_bpr_popularity_negatives_demote_popular_items() -> None:
    # popular items are drawn as negatives more often, so they end lower in the ranking
    train, _ = planted_split()
    popularity = np.asarray((train != 0).sum(axis=0)).ravel()
    mean_popularity = {}
    for sampling in ("uniform", "popularity"):
        model = mfengine.create(
            "bpr", factors=16, iterations=40, negative_sampling=sampling, random_state=0
        ).fit(train)
        ids, _ = model.recommend(np.arange(100), train, n=10)
        mean_popularity[sampling] = popularity[ids].mean()
    assert mean_popularity["popularity"] < 0.8 * mean_popularity["uniform"]
    with pytest.raises(ValueError, match="negative_sampling"):
        mfengine.create("bpr", negative_sampling="hard").fit(train)


# -- the compiled top-n equals a full sort ---------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_top_n_equals_full_sort_on_random_blocks(seed):
    from mfengine.topn import top_n_float32 as _top_n

    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 40)), int(rng.choice([1, 7, 50, 333, 2000]))
    if seed % 3 == 0:
        scores = rng.integers(0, 5, (rows, cols)).astype(np.float32)  # heavy ties
    else:
        scores = rng.standard_normal((rows, cols)).astype(np.float32)
    special = rng.random((rows, cols))
    scores[special < 0.05] = -np.inf
    if seed % 4 == 1:
        scores[special > 0.99] = np.nan
        scores[(special > 0.985) & (special <= 0.99)] = np.inf
    if seed % 5 == 2:
        scores[: rows // 2] = -np.inf  # nothing left for some rows
    remove = sp.random(rows, cols, density=0.1, random_state=seed, format="csr")
    removed = scores.copy()
    removed[remove.nonzero()] = -np.inf
    original = scores.copy()
    for n in (1, 3, 10, cols, cols + 5):
        want = reference_top_n(removed, n)
        for got in (_top_n(scores, n, remove), _top_n(removed, n)):
            assert np.array_equal(got[0], want[0]), n
            assert np.array_equal(got[1], want[1]), n
    np.testing.assert_array_equal(scores, original)  # the caller's block is not edited


@pytest.mark.parametrize("seed", range(4))
def test_recommend_vectors_equals_full_sort(seed):
    rng = np.random.default_rng(seed)
    train = sp.random(300, 120, density=0.05, random_state=seed, format="csr", dtype=np.float32)
    train.data[:] = 1.0
    model = mfengine.create("als", factors=8, iterations=3, random_state=seed).fit(train)
    # small integer factors: exact scores whatever the summation order, and many ties
    model.user_factors_ = rng.integers(-2, 3, model.user_factors_.shape).astype(np.float32)
    model.item_factors_ = rng.integers(-2, 3, model.item_factors_.shape).astype(np.float32)
    users = rng.permutation(300)[:260]  # more than one block of users
    items = None if seed % 2 == 0 else np.sort(rng.choice(120, 70, replace=False))
    exclude = rng.choice(120, 6, replace=False)
    for n in (1, 10, 120):
        ids, scores = model.recommend(users, train, n=n, items=items, exclude=exclude)
        dense = model.user_factors_[users] @ model.item_factors_.T
        allowed = np.zeros(120, bool)
        allowed[np.arange(120) if items is None else items] = True
        allowed[exclude] = False
        dense[:, ~allowed] = -np.inf
        dense[train[users].nonzero()] = -np.inf
        want_ids, want_scores = reference_top_n(dense, n)
        assert np.array_equal(ids, want_ids)
        assert np.array_equal(scores, want_scores)
