"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) with conjugate-gradient solves."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine import _kernels
from mfengine.base import MatrixFactorization, RandomState, check_user_items, random_factors

#: lambda for regularization="auto", per scaling (see the class docstring and README).
AUTO_REGULARIZATION = {"singular_value": 0.17, "count": 0.3, "none": 50.0}
#: Power-iteration steps for the largest singular value: interaction data's leading singular
#: value stands well clear of the next, so far fewer usually suffice (checked against svds).
_POWER_STEPS = 30


def confidence_singular_value(user_items: sp.csr_matrix, alpha: float) -> float:
    """Largest singular value of the matrix holding sqrt(1 + alpha * strength) on observed
    entries (0 elsewhere): the scale of the data term the penalty competes with, the
    confidence-weighted analogue of the largest singular value of the 0/1 matrix."""
    if user_items.nnz == 0:
        return 0.0
    weighted = sp.csr_matrix(
        (np.sqrt(1.0 + alpha * user_items.data.astype(np.float64)), user_items.indices,
         user_items.indptr), shape=user_items.shape)
    # The leading singular vector of a non-negative matrix is non-negative: start from ones.
    vector = np.ones(weighted.shape[1]) / np.sqrt(weighted.shape[1])
    value = 0.0
    for _ in range(_POWER_STEPS):
        product = weighted.T @ (weighted @ vector)
        norm = float(np.linalg.norm(product))
        if norm == 0.0:
            return 0.0
        vector = product / norm
        value = np.sqrt(norm)
    return float(value)


def regularization_rule(regularization: float | str, scaling: str | None,
                        number_scaling: str = "none") -> tuple[str, float]:
    """(scaling, lambda) of a strategy's `regularization` and `regularization_scaling`: "auto"
    is the measured default of the scaling; an unset scaling is "singular_value" with "auto"
    and `number_scaling` with a number (ALS: "none", a fixed lambda; Spark's regParam:
    "count"). ValueError naming what is wrong."""
    if scaling is None:
        scaling = "singular_value" if regularization == "auto" else number_scaling
    if scaling not in AUTO_REGULARIZATION:
        raise ValueError(f"regularization_scaling must be one of "
                         f"{', '.join(AUTO_REGULARIZATION)} or None, got {scaling!r}")
    if regularization == "auto":
        return scaling, AUTO_REGULARIZATION[scaling]
    if isinstance(regularization, str | bool) or not np.isfinite(regularization) or (
            regularization < 0):
        raise ValueError(f"regularization must be 'auto' or a number >= 0, got "
                         f"{regularization!r}")
    return scaling, float(regularization)


def weighted_lambda(rule: tuple[str, float], user_items: sp.csr_matrix | None,
                    alpha: float) -> float:
    """The weighted-lambda factor (each user's and item's penalty is the factor x its number
    of interactions: ALS-WR, Spark MLlib's regParam) as strong as `rule` on this data.

    No factor makes the two penalties equal row by row (weighted lambda puts thousands of
    times more on a popular item than on a rare one), so strength is taken relative to each
    rule's measured default (AUTO_REGULARIZATION, benchmarks/regularization.py): a rule at its
    scaling's default gives the count default, twice the default twice that. A fixed lambda is
    compared with what "auto" gives on `user_items` (the singular-value rule)."""
    scaling, value = rule
    if scaling == "count":
        return value
    auto = AUTO_REGULARIZATION["singular_value"]
    if scaling == "none":
        auto *= confidence_singular_value(user_items, alpha)
    return AUTO_REGULARIZATION["count"] * value / auto if auto > 0 else 0.0


# Rows per block of the loss's sums: float64 precision without a float64 copy of every factor
# (750k users x 64 factors: 384 MB, on every iteration).
_LOSS_BLOCK = 65536


def gram64(factors: np.ndarray, block_rows: int = _LOSS_BLOCK) -> np.ndarray:
    """factors^T factors accumulated in float64 over float32 blocks of `block_rows` rows."""
    gram = np.zeros((factors.shape[1], factors.shape[1]), dtype=np.float64)
    for start in range(0, factors.shape[0], block_rows):
        block = factors[start:start + block_rows].astype(np.float64)
        gram += block.T @ block
        del block  # else it is still held while the next one is made
    return gram


def weighted_norms(weights: np.ndarray, factors: np.ndarray,
                   block_rows: int = _LOSS_BLOCK) -> float:
    """sum_r weights_r |factors_r|^2 in float64, `block_rows` rows at a time."""
    total = 0.0
    for start in range(0, factors.shape[0], block_rows):
        block = factors[start:start + block_rows].astype(np.float64)
        total += float(weights[start:start + block_rows] @ np.einsum("ij,ij->i", block, block))
        del block
    return total


class ALS(MatrixFactorization):
    """Alternating least squares for implicit feedback.

    Objective: sum over all (u, i) of c_ui (p_ui - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 +
    sum_i lambda_i |y_i|^2, with preference p = 1 on observed entries and 0 elsewhere,
    confidence c = 1 + alpha * strength on observed entries and 1 elsewhere.

    The penalty (``regularization``, ``regularization_scaling``):

    - ``"auto"`` (default): one lambda for every row, AUTO_REGULARIZATION["singular_value"]
      x the largest singular value of the matrix holding sqrt(c) on observed entries
      (:func:`confidence_singular_value`, 30 power-iteration steps at fit time). That value
      is the scale of the data term the penalty competes with: it grows with the number of
      users and items, their density and the strength values, so one share carries across
      data sets where one fixed lambda does not (a fixed 200 is right for repeat counts and
      collapses a sparse binary set). The factor comes from benchmarks/regularization.py
      (RESULTS.md, "als_defaults").
    - a number: that lambda for every row (``regularization_scaling`` "none"), as before.
    - ``regularization_scaling="count"``: weighted-lambda (Zhou et al. 2008; Spark's ALS):
      each user's and item's penalty is the number x its count of interactions.
    - ``regularization_scaling="singular_value"`` with a number: that share of the singular
      value (what the tuner searches).

    The lambda a fit used is ``regularization_`` (saved with the model; fold-in uses it).
    ``alpha`` 1 (2 before) came out of the same measurements as the penalty: with the
    singular-value rule it was the better of 1, 2 and 5 on the worst shape.

    ``solver="cg"`` (default) runs ``cg_steps`` conjugate-gradient steps per row warm-started
    from the previous factors; ``solver="cholesky"`` solves each row exactly.
    ``num_threads``: numba threads for fit, fold-in and top-n (0: all of the machine's cores);
    set for the call and restored afterwards, with BLAS at one thread (:mod:`mfengine.threads`).
    The loss reported per iteration is the objective divided by the number of observed entries.
    """

    name = "als"
    _state_arrays = ("user_factors_", "item_factors_", "regularization_")
    # Each half-iteration solves one side from the other, so a start near the optimum (a
    # model of most of the same data) needs only a few iterations (mfplatform's refit).
    supports_warm_start = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float | str = "auto",
        alpha: float = 1.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        calculate_training_loss: bool = True,
        num_threads: int = 0,
        random_state: RandomState = None,
        regularization_scaling: str | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.regularization_scaling = regularization_scaling
        self.alpha = alpha
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.calculate_training_loss = calculate_training_loss
        self.num_threads = num_threads
        self.random_state = random_state

    def _prepare(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        if self.solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'cg' or 'cholesky', got {self.solver!r}")
        if self.factors < 1 or self.iterations < 0 or self.cg_steps < 1:
            raise ValueError("factors and cg_steps must be >= 1 and iterations >= 0")
        self.regularization_rule()  # validates both
        if self.alpha < 0:
            raise ValueError("alpha must be >= 0")
        return check_user_items(user_items, allow_negative=False)

    def regularization_rule(self) -> tuple[str, float]:
        """(scaling, lambda) as given (see :func:`regularization_rule`)."""
        return regularization_rule(self.regularization, self.regularization_scaling)

    def effective_regularization(self, user_items: sp.csr_matrix) -> float:
        """The lambda a fit on ``user_items`` uses: with "singular_value" scaling the factor x
        :func:`confidence_singular_value`; otherwise the factor itself (per interaction with
        "count")."""
        scaling, factor = self.regularization_rule()
        if scaling == "singular_value":
            return factor * confidence_singular_value(user_items, float(self.alpha))
        return factor

    def _penalty(self) -> float:
        """The fitted lambda; artifacts written before it was stored hold a fixed number."""
        fitted = self.__dict__.get("regularization_")
        if fitted is not None:
            return float(fitted)
        scaling, value = self.regularization_rule()
        if scaling == "singular_value":
            raise ValueError("this model has no fitted regularization_; fit or load it first")
        return value

    def row_penalties(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Each row's L2 penalty (float32) in a fitted model: lambda, or lambda x the row's
        number of interactions with "count" scaling (weighted-lambda, Zhou et al. 2008)."""
        penalty = self._penalty()
        if self.regularization_rule()[0] == "count":
            return (penalty * np.diff(matrix.indptr)).astype(np.float32)
        return np.full(matrix.shape[0], penalty, dtype=np.float32)

    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        n_users, n_items = user_items.shape
        scale = np.float32(0.01)
        self.user_factors_ = random_factors(rng, n_users, self.factors, scale)
        self.item_factors_ = random_factors(rng, n_items, self.factors, scale)
        item_users = user_items.T.tocsr()
        self._item_users = item_users
        self.regularization_ = np.float32(self.effective_regularization(user_items))
        self._user_penalties = self.row_penalties(user_items)
        self._item_penalties = self.row_penalties(item_users)
        self.__dict__.pop("_fold_in_gram_cache", None)

    def _fold_in_gram(self) -> np.ndarray:
        """Y^T Y (float64) for fold-in, kept until a fit replaces the item factors: folding in
        one user (serving does, per request) must not cost a pass over every item (~26 ms at
        100k items and 64 factors)."""
        Y = self.item_factors_
        key = (id(Y), Y.shape)
        cached = self.__dict__.get("_fold_in_gram_cache")
        if cached is None or cached[0] != key:
            Yd = Y.astype(np.float64)
            cached = (key, Yd.T @ Yd)
            self._fold_in_gram_cache = cached
        return cached[1]

    def _solve_half(
        self, matrix: sp.csr_matrix, X: np.ndarray, Y: np.ndarray, penalties: np.ndarray
    ) -> None:
        gram = (Y.T @ Y).astype(np.float32, copy=False)  # once per half-iteration
        alpha = np.float32(self.alpha)
        if self.solver == "cg":
            _kernels.als_cg_half(matrix.indptr, matrix.indices, matrix.data, X, Y, gram, alpha,
                                 self.cg_steps, penalties)
        else:
            _kernels.als_cholesky_half(matrix.indptr, matrix.indices, matrix.data, X, Y,
                                       gram.astype(np.float64), alpha, penalties)

    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        self._solve_half(user_items, self.user_factors_, self.item_factors_,
                         self._user_penalties)
        self._solve_half(self._item_users, self.item_factors_, self.user_factors_,
                         self._item_penalties)
        if not self.calculate_training_loss:
            return float("nan")
        return self._loss(user_items)

    def _loss(self, user_items: sp.csr_matrix) -> float:
        X, Y = self.user_factors_, self.item_factors_
        observed = _kernels.als_observed_loss(
            user_items.indptr, user_items.indices, user_items.data, X, Y, np.float32(self.alpha)
        )
        everything = float(np.sum(gram64(X) * gram64(Y)))
        penalty = weighted_norms(self._user_penalties, X) + weighted_norms(self._item_penalties, Y)
        return (observed + everything + penalty) / max(user_items.nnz, 1)

    def _finalize(self, user_items: sp.csr_matrix) -> None:
        del self._item_users, self._user_penalties, self._item_penalties
        self.__dict__.pop("_fold_in_gram_cache", None)  # the factors moved in place

    def fold_in(self, item_ids: Any, strengths: Any = None) -> np.ndarray:
        """Exact least-squares user vector for the implicit objective, item factors fixed."""
        ids, values = self._fold_in_inputs(item_ids, strengths)
        gram = self._fold_in_gram()
        if ids.size == 0:
            return np.zeros(gram.shape[0], dtype=np.float32)
        penalty = self._penalty()
        ridge = penalty * ids.size if self.regularization_rule()[0] == "count" else penalty
        selected = self.item_factors_[ids].astype(np.float64)
        extra = self.alpha * values.astype(np.float64)
        A = gram + ridge * np.eye(gram.shape[0]) + (selected.T * extra) @ selected
        b = selected.T @ (1.0 + extra)
        return np.linalg.solve(A, b).astype(np.float32)
