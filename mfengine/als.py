"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) with conjugate-gradient solves."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine import _kernels
from mfengine.base import MatrixFactorization, RandomState, check_user_items


class ALS(MatrixFactorization):
    """Alternating least squares for implicit feedback.

    Objective: sum over all (u, i) of c_ui (p_ui - x_u . y_i)^2 + regularization
    (|X|^2 + |Y|^2), with preference p = 1 on observed entries and 0 elsewhere, confidence
    c = 1 + alpha * strength on observed entries and 1 elsewhere.

    ``solver="cg"`` (default) runs ``cg_steps`` conjugate-gradient steps per row warm-started
    from the previous factors; ``solver="cholesky"`` solves each row exactly.
    ``num_threads``: numba threads for fit, fold-in and top-n (0: all of the machine's cores);
    set for the call and restored afterwards, with BLAS at one thread (:mod:`mfengine.threads`).
    The loss reported per iteration is the objective divided by the number of observed entries.

    Defaults (regularization 50, alpha 2) come from a small grid on three data sets with the
    benchmark's temporal split: ml-latest-small and synthetic sets of 0.4M and 2.4M events
    (benchmarks/RESULTS.md). Strong L2 helped all of them far more than a large alpha. The
    penalty is absolute (not scaled by counts) and the best value grew with the data size, so
    much larger data may want a tuning pass (mfengine.tuning).
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 50.0,
        alpha: float = 2.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        calculate_training_loss: bool = True,
        num_threads: int = 0,
        random_state: RandomState = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
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
        if self.alpha < 0 or self.regularization < 0:
            raise ValueError("alpha and regularization must be >= 0")
        return check_user_items(user_items, allow_negative=False)

    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        n_users, n_items = user_items.shape
        scale = np.float32(0.01)
        self.user_factors_ = (rng.standard_normal((n_users, self.factors)) * scale).astype(
            np.float32
        )
        self.item_factors_ = (rng.standard_normal((n_items, self.factors)) * scale).astype(
            np.float32
        )
        item_users = user_items.T.tocsr()
        self._item_users = item_users
        self.__dict__.pop("_fold_in_gram_cache", None)

    def _fold_in_gram(self) -> np.ndarray:
        """Y^T Y + lambda I (float64) for fold-in, kept until a fit replaces the item factors:
        folding in one user (serving does, per request) must not cost a pass over every item
        (~26 ms at 100k items and 64 factors)."""
        Y = self.item_factors_
        key = (id(Y), Y.shape, float(self.regularization))
        cached = self.__dict__.get("_fold_in_gram_cache")
        if cached is None or cached[0] != key:
            Yd = Y.astype(np.float64)
            cached = (key, Yd.T @ Yd + self.regularization * np.eye(Y.shape[1]))
            self._fold_in_gram_cache = cached
        return cached[1]

    def _solve_half(self, matrix: sp.csr_matrix, X: np.ndarray, Y: np.ndarray) -> None:
        gram = self._gram(Y)
        alpha = np.float32(self.alpha)
        if self.solver == "cg":
            _kernels.als_cg_half(
                matrix.indptr, matrix.indices, matrix.data, X, Y, gram, alpha, self.cg_steps
            )
        else:
            _kernels.als_cholesky_half(
                matrix.indptr, matrix.indices, matrix.data, X, Y, gram.astype(np.float64), alpha
            )

    def _gram(self, Y: np.ndarray) -> np.ndarray:
        """Y^T Y + lambda I, float32, computed once per half-iteration."""
        gram = Y.T @ Y
        gram[np.diag_indices_from(gram)] += np.float32(self.regularization)
        return gram.astype(np.float32, copy=False)

    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        self._solve_half(user_items, self.user_factors_, self.item_factors_)
        self._solve_half(self._item_users, self.item_factors_, self.user_factors_)
        if not self.calculate_training_loss:
            return float("nan")
        return self._loss(user_items)

    def _loss(self, user_items: sp.csr_matrix) -> float:
        X, Y = self.user_factors_, self.item_factors_
        observed = _kernels.als_observed_loss(
            user_items.indptr, user_items.indices, user_items.data, X, Y, np.float32(self.alpha)
        )
        everything = float(np.sum((X.T.astype(np.float64) @ X) * (Y.T.astype(np.float64) @ Y)))
        penalty = self.regularization * (float(np.sum(X * X)) + float(np.sum(Y * Y)))
        return (observed + everything + penalty) / max(user_items.nnz, 1)

    def _finalize(self, user_items: sp.csr_matrix) -> None:
        del self._item_users
        self.__dict__.pop("_fold_in_gram_cache", None)  # the factors moved in place

    def fold_in(self, item_ids: Any, strengths: Any = None) -> np.ndarray:
        """Exact least-squares user vector for the implicit objective, item factors fixed."""
        ids, values = self._fold_in_inputs(item_ids, strengths)
        gram = self._fold_in_gram()
        if ids.size == 0:
            return np.zeros(gram.shape[0], dtype=np.float32)
        selected = self.item_factors_[ids].astype(np.float64)
        extra = self.alpha * values.astype(np.float64)
        A = gram + (selected.T * extra) @ selected
        b = selected.T @ (1.0 + extra)
        return np.linalg.solve(A, b).astype(np.float32)
