"""ALS's penalty: "auto" scales with the data (a share of the confidence matrix's largest
singular value), "count" is weighted-lambda per row, a number is that number; the solves use
exactly the penalty they claim (checked against numpy on a 3 x 3 case)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mfengine.als import (
    ALS,
    AUTO_REGULARIZATION,
    confidence_singular_value,
    regularization_rule,
    weighted_lambda,
)
from mfengine.testing import planted_split

# user 0 has three events, user 1 one, user 2 two
THREE = sp.csr_matrix(np.array([[1.0, 2.0, 1.0], [0.0, 1.0, 0.0], [3.0, 0.0, 1.0]],
                               dtype=np.float32))


def _exact_user_solution(model: ALS, matrix: sp.csr_matrix, user: int, penalty: float
                         ) -> np.ndarray:
    """argmin_x sum_i c_ui (p_ui - x.y_i)^2 + penalty |x|^2 with the model's item factors."""
    Y = model.item_factors_.astype(np.float64)
    row = matrix[user].toarray().ravel().astype(np.float64)
    confidence = 1.0 + model.alpha * row
    preference = (row > 0).astype(np.float64)
    A = (Y.T * confidence) @ Y + penalty * np.eye(Y.shape[1])
    return np.linalg.solve(A, (Y.T * confidence) @ preference)


def _one_more_user_step(model: ALS, matrix: sp.csr_matrix) -> np.ndarray:
    X = model.user_factors_.copy()
    model._solve_half(matrix, X, model.item_factors_, model.row_penalties(matrix))
    return X


def test_auto_is_a_share_of_the_confidence_matrix_largest_singular_value() -> None:
    model = ALS(factors=3, iterations=2, alpha=2.0, solver="cholesky", random_state=0)
    model.fit(THREE)
    weighted = THREE.toarray().astype(np.float64)
    weighted[weighted > 0] = np.sqrt(1.0 + 2.0 * weighted[weighted > 0])
    largest = np.linalg.svd(weighted, compute_uv=False)[0]
    assert confidence_singular_value(THREE, 2.0) == pytest.approx(largest, rel=1e-6)
    expected = AUTO_REGULARIZATION["singular_value"] * largest
    assert float(model.regularization_) == pytest.approx(expected, rel=1e-5)
    # every user's solve uses that one penalty, and not the old fixed 50
    X = _one_more_user_step(model, THREE)
    for user in range(3):
        np.testing.assert_allclose(X[user], _exact_user_solution(model, THREE, user, expected),
                                   rtol=1e-4, atol=1e-6)
        assert not np.allclose(X[user], _exact_user_solution(model, THREE, user, 50.0),
                               rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_count_scaling_gives_a_user_with_more_events_the_larger_penalty(solver: str) -> None:
    # cg with 3 steps on a 3-factor system is exact up to rounding
    model = ALS(factors=3, iterations=2, regularization=0.5, regularization_scaling="count",
                solver=solver, cg_steps=3, random_state=0).fit(THREE)
    np.testing.assert_allclose(model.row_penalties(THREE), [1.5, 0.5, 1.0])
    X = _one_more_user_step(model, THREE)
    for user, events in ((0, 3), (1, 1), (2, 2)):
        np.testing.assert_allclose(X[user], _exact_user_solution(model, THREE, user,
                                                                 0.5 * events),
                                   rtol=2e-3, atol=1e-5)
    # the same penalty for everyone would give user 0 a different vector
    assert not np.allclose(X[0], _exact_user_solution(model, THREE, 0, 0.5), rtol=1e-2)
    # fold-in uses the same rule: the user's count times the factor
    np.testing.assert_allclose(model.fold_in([0, 1, 2], [1.0, 2.0, 1.0]),
                               _exact_user_solution(model, THREE, 0, 1.5), rtol=1e-4,
                               atol=1e-6)


def test_a_number_still_means_that_number() -> None:
    model = ALS(factors=3, iterations=2, regularization=5.0, solver="cholesky",
                random_state=0).fit(THREE)
    assert float(model.regularization_) == 5.0
    np.testing.assert_allclose(model.row_penalties(THREE), [5.0, 5.0, 5.0])
    X = _one_more_user_step(model, THREE)
    np.testing.assert_allclose(X[0], _exact_user_solution(model, THREE, 0, 5.0), rtol=1e-4,
                               atol=1e-6)


def test_auto_grows_with_the_data_as_the_objective_does() -> None:
    """Twice the users with the same tastes: the data term doubles and the nuclear-norm
    equivalent of the penalty grows by sqrt(2), so the same solution needs sqrt(2) x lambda."""
    train, _ = planted_split()
    once = ALS(factors=4, iterations=1, random_state=0).fit(train)
    twice = ALS(factors=4, iterations=1, random_state=0).fit(sp.vstack([train, train]).tocsr())
    assert float(twice.regularization_) == pytest.approx(
        np.sqrt(2) * float(once.regularization_), rel=1e-3)


def test_the_fitted_penalty_travels_with_the_model(tmp_path) -> None:
    import mfengine

    train, _ = planted_split()
    model = ALS(factors=4, iterations=3, random_state=0).fit(train)
    model.save(tmp_path / "m.npz")
    loaded = mfengine.load(tmp_path / "m.npz")
    assert float(loaded.regularization_) == float(model.regularization_)
    np.testing.assert_array_equal(loaded.fold_in([1, 4, 7]), model.fold_in([1, 4, 7]))


@pytest.mark.parametrize("params, message", [
    ({"regularization": "lots"}, "regularization must be 'auto' or a number"),
    ({"regularization": -1.0}, "regularization must be 'auto' or a number"),
    ({"regularization_scaling": "users"}, "regularization_scaling must be one of"),
])
def test_bad_penalties_are_refused(params, message) -> None:
    with pytest.raises(ValueError, match=message):
        ALS(factors=2, iterations=1, **params).fit(THREE)


def test_the_weighted_lambda_of_a_rule_is_its_strength_relative_to_its_default() -> None:
    """What Spark's ALS-WR gets for an ALS penalty: count passes through, each rule's default
    gives the count default, and a fixed lambda counts against what "auto" gives here."""
    train, _ = planted_split()
    count, share = AUTO_REGULARIZATION["count"], AUTO_REGULARIZATION["singular_value"]
    assert weighted_lambda(("count", 0.05), train, 1.0) == 0.05
    assert weighted_lambda(("singular_value", share), None, 1.0) == pytest.approx(count)
    assert weighted_lambda(("singular_value", 2 * share), None, 1.0) == pytest.approx(2 * count)
    auto_lambda = share * confidence_singular_value(train, 2.0)
    assert weighted_lambda(("none", auto_lambda), train, 2.0) == pytest.approx(count)
    assert weighted_lambda(("none", auto_lambda / 4), train, 2.0) == pytest.approx(count / 4)


@pytest.mark.parametrize("regularization,scaling,expected", [
    ("auto", None, ("singular_value", AUTO_REGULARIZATION["singular_value"])),
    (2.0, None, ("count", 2.0)), (2.0, "none", ("none", 2.0)),
    ("auto", "count", ("count", AUTO_REGULARIZATION["count"]))])
def test_a_number_without_a_scaling_is_what_the_engine_calls_it(regularization, scaling,
                                                                expected) -> None:
    assert regularization_rule(regularization, scaling, number_scaling="count") == expected
    with pytest.raises(ValueError, match="regularization must be"):
        regularization_rule(-1.0, scaling)
