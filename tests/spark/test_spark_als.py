"""The Spark strategy against mfengine's conformance suite, and what is its own: the order of
the factors, ALS-WR fold-in, Spark's hyperparameter mapping, the Parquet it trains from."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

import mfengine
import mfengine_spark.als
import mfengine_spark.parquet
from mfengine.testing import StrategyConformance, planted_split
from mfengine_spark import SparkALS, write_interactions
from mfengine_spark.entries import entry_blocks
from mfengine_spark.inputs import scratch_parent

HYPERPARAMETERS = {"factors": 8, "iterations": 3}


@functools.cache
def _default_fit() -> SparkALS:
    train, _ = planted_split()
    return mfengine.create("spark_als", **HYPERPARAMETERS, random_state=0).fit(train)


class TestSparkALS(StrategyConformance):
    strategy_name = "spark_als"
    hyperparameters = HYPERPARAMETERS

    def fitted(self, **overrides):
        # A Spark fit costs seconds: the tests that only read the default model share one
        # (the fit is deterministic for a seed; the seed tests still fit for themselves).
        if not overrides:
            return _default_fit()
        return super().fitted(**overrides)


def test_factors_come_back_in_matrix_order() -> None:
    """Row u of the user factors is matrix row u: a user's top items are the items of the
    users that share them, whatever order Spark's partitions returned."""
    model = _default_fit()
    train, _ = planted_split()
    learned = model.user_factors_
    for user in (0, 17, 399):
        folded = model.fold_in(train[user].indices, train[user].data)
        np.testing.assert_allclose(folded, learned[user], rtol=1e-3, atol=1e-4)


def test_users_and_items_without_events_get_zero_vectors() -> None:
    dense = sp.random(30, 20, density=0.3, random_state=1, dtype=np.float32).toarray()
    dense[:, 5] = 0  # an item without events
    matrix = sp.csr_matrix(np.vstack([dense, np.zeros((2, 20), np.float32)]))  # two users
    model = SparkALS(factors=4, iterations=2, random_state=0).fit(matrix)
    assert model.user_factors_.shape == (32, 4)
    assert not model.user_factors_[30:].any()
    assert not model.item_factors_[5].any()
    assert model.user_factors_[:30].any()


def test_fold_in_penalty_is_scaled_by_the_history_length() -> None:
    """Spark's ALS-WR: regularization times the number of positive entries."""
    model = _default_fit()
    Y = model.item_factors_.astype(np.float64)
    ids, strengths = np.array([1, 4, 9]), np.array([1.0, 2.0, 0.5], np.float32)
    extra = model.alpha * strengths
    A = Y.T @ Y + (Y[ids].T * extra) @ Y[ids] + model.regularization_ * 3 * np.eye(Y.shape[1])
    expected = np.linalg.solve(A, Y[ids].T @ (1.0 + extra))
    np.testing.assert_allclose(model.fold_in(ids, strengths), expected, rtol=1e-4, atol=1e-6)


def test_empty_matrix_and_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="no interactions"):
        SparkALS(factors=4, iterations=1).fit(sp.csr_matrix((3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="iterations"):
        SparkALS(iterations=0).fit(sp.eye(3, format="csr"))
    with pytest.raises(ValueError, match="alpha"):
        SparkALS(alpha=-1).fit(sp.eye(3, format="csr"))


def test_parquet_holds_every_entry_by_position(tmp_path) -> None:
    matrix = sp.csr_matrix(np.array([[0, 2.5, 0], [1, 0, 3]], dtype=np.float32))
    table = pq.read_table(write_interactions(matrix, tmp_path))
    rows = sorted(zip(table["user"].to_pylist(), table["item"].to_pylist(),
                      table["value"].to_pylist(), strict=True))
    assert rows == [(0, 1, 2.5), (1, 0, 1.0), (1, 2, 3.0)]


def _with_empty_rows() -> sp.csr_matrix:
    """23 x 17, strengths 0.1-3, the first two rows, row 10 and the last three empty."""
    rng = np.random.default_rng(3)
    dense = np.where(rng.random((23, 17)) < 0.35, rng.uniform(0.1, 3.0, (23, 17)), 0.0)
    dense[[0, 1, 10, 20, 21, 22]] = 0
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("size", [1, 4, 7, 1000])
def test_entry_blocks_are_the_matrix_entries_in_row_order(size) -> None:
    matrix = _with_empty_rows()
    blocks = list(entry_blocks(matrix, size))
    assert all(len(rows) <= size for rows, _, _ in blocks)
    coo = matrix.tocoo()
    for got, expected in zip(map(np.concatenate, zip(*blocks, strict=True)),
                             (coo.row, coo.col, coo.data), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_parquet_is_written_a_row_group_at_a_time(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(mfengine_spark.parquet, "ROW_GROUP_ROWS", 5)
    matrix = _with_empty_rows()
    parquet = pq.ParquetFile(write_interactions(matrix, tmp_path))
    assert parquet.num_row_groups == -(-matrix.nnz // 5) > 3
    assert max(parquet.metadata.row_group(g).num_rows for g in range(3)) == 5
    table, coo = parquet.read(), matrix.tocoo()
    for column, expected in (("user", coo.row), ("item", coo.col), ("value", coo.data)):
        np.testing.assert_array_equal(table[column].to_numpy(), expected)


def test_blocked_objective_equals_the_dense_sum(monkeypatch) -> None:
    """The objective summed a few entries and rows at a time is the one over the whole
    users x items grid: c (p - x.y)^2 everywhere plus regParam x count x |row|^2 (up to the
    float32 confidence the engine computes, as Spark does)."""
    monkeypatch.setattr(mfengine_spark.als, "_LOSS_BLOCK", 4)
    matrix = _with_empty_rows()
    assert matrix.nnz > 3 * 4
    rng = np.random.default_rng(4)
    model = SparkALS(factors=3, alpha=2.0)
    model.user_factors_ = rng.standard_normal((23, 3)).astype(np.float32)
    model.item_factors_ = rng.standard_normal((17, 3)).astype(np.float32)
    model.regularization_ = np.float32(0.25)
    X, Y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    strength = matrix.toarray().astype(np.float64)
    observed = strength > 0
    grid = np.sum((1 + 2.0 * strength) * (observed - X @ Y.T) ** 2)
    penalty = 0.25 * (observed.sum(axis=1) @ (X * X).sum(axis=1)
                      + observed.sum(axis=0) @ (Y * Y).sum(axis=1))
    np.testing.assert_allclose(model._loss(matrix), (grid + penalty) / matrix.nnz, rtol=1e-6)


def test_last_loss_is_the_objective_of_the_final_factors() -> None:
    model = _default_fit()
    assert np.isnan(model.loss_history_[:-1]).all()
    assert np.isfinite(model.loss_history_[-1]) and model.loss_history_[-1] > 0


def test_one_plan_trains_models_of_the_same_strength_on_either_engine() -> None:
    """The same hyperparameters through mfengine's ALS and Spark's: the default ("auto"), and a
    fixed lambda, which spark_als converts to the regParam of the same strength."""
    train, test = planted_split()
    for plan in ({}, {"regularization": 5.0}):
        shared = {"factors": 8, "iterations": 10, "random_state": 0, **plan}
        als = mfengine.create("als", **shared).fit(train)
        spark = mfengine.create("spark_als", regularization_scaling="none" if plan else None,
                                **shared).fit(train)
        ours, theirs = _ndcg(als, train, test), _ndcg(spark, train, test)
        assert theirs >= 0.9 * ours, (plan, ours, theirs)


def _ndcg(model, train, test) -> float:
    from mfengine.evaluation import evaluate_model

    return evaluate_model(model, train, test, ks=(10,))["metrics"]["overall"]["10"]["ndcg"]


def test_a_fit_given_its_parquet_reads_it_and_writes_no_copy(tmp_path, monkeypatch) -> None:
    """input_uri: the same model as from the fit's own copy, and no scratch folder touched (one
    that does not exist would fail any copy)."""
    train, _ = planted_split()
    stored = write_interactions(train, tmp_path / "stored")
    monkeypatch.setenv("SPARK_SCRATCH_DIR", str(tmp_path / "no-such-folder"))
    with pytest.raises(FileNotFoundError):  # the check itself can fail: a copy is refused
        SparkALS(**HYPERPARAMETERS, random_state=0).fit(train)
    model = SparkALS(**HYPERPARAMETERS, random_state=0)
    model.input_uri = f"file://{stored}"
    model.fit(train)
    np.testing.assert_allclose(model.user_factors_, _default_fit().user_factors_, atol=1e-5)
    np.testing.assert_allclose(model.item_factors_, _default_fit().item_factors_, atol=1e-5)
    assert "input_uri" not in model.get_params()  # it names the data, not the model
    assert not (tmp_path / "no-such-folder").exists()


def test_a_parquet_of_another_matrix_is_refused_by_name(tmp_path) -> None:
    train, test = planted_split()
    uri = f"file://{write_interactions(train, tmp_path)}"
    model = SparkALS(**HYPERPARAMETERS, random_state=0)
    model.input_uri = uri
    with pytest.raises(ValueError, match=rf"{uri} is not the matrix.*rows for {test.nnz} "):
        model.fit(test)  # the split's other part: fewer entries
    narrow = _first_positions(train.nnz, (train.shape[0], train.shape[1] // 2))
    with pytest.raises(ValueError, match=r"items 0\.\.\d+ outside the"):
        model.fit(narrow)  # as many entries, but the file's items reach past its columns
    doubled = train * 2  # same positions, other strengths (another weighting)
    with pytest.raises(ValueError, match="values summing to") as error:
        model.fit(doubled)
    assert "rows for" not in str(error.value) and "outside" not in str(error.value)
    assert "user_factors_" not in model.__dict__


def _first_positions(count: int, shape: tuple[int, int]) -> sp.csr_matrix:
    """`count` ones at the first positions of `shape` in row order."""
    rows, cols = np.divmod(np.arange(count), shape[1])
    return sp.csr_matrix((np.ones(count, np.float32), (rows, cols)), shape=shape)


def test_a_cluster_without_an_input_uri_needs_a_shared_scratch_folder(monkeypatch) -> None:
    """Executors on other machines cannot read this process's temp folder: refused, unless
    SPARK_SCRATCH_DIR names a folder the operator shares."""
    monkeypatch.delenv("SPARK_SCRATCH_DIR", raising=False)
    assert scratch_parent("local[2]") is None
    with pytest.raises(ValueError, match="spark://spark:7077 needs input_uri"):
        scratch_parent("spark://spark:7077")
    monkeypatch.setenv("SPARK_SCRATCH_DIR", "/mnt/shared/spark")
    assert scratch_parent("spark://spark:7077") == "/mnt/shared/spark"
