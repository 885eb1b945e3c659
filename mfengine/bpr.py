"""Bayesian personalised ranking (Rendle et al. 2009) with an item bias."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine import _kernels
from mfengine.base import MatrixFactorization, RandomState, check_user_items


class BPR(MatrixFactorization):
    """Pairwise ranking: maximise log sigmoid(s_ui - s_uj), s_ui = x_u . y_i + b_i.

    Positives are the stored entries of ``user_items`` (any positive strength); each epoch
    draws nnz (user, positive) samples and one negative each, re-drawn if the user has it.
    ``negative_sampling``: "uniform" (default) or "popularity" (proportional to item counts).
    The loss per epoch is the mean -log sigmoid over every 8th sample of the epoch.
    """

    name = "bpr"
    _state_arrays = ("user_factors_", "item_factors_", "item_bias_")

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        learning_rate: float = 0.05,
        iterations: int = 100,
        negative_sampling: str = "uniform",
        random_state: RandomState = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.learning_rate = learning_rate
        self.iterations = iterations
        self.negative_sampling = negative_sampling
        self.random_state = random_state

    def _prepare(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        if self.negative_sampling not in ("uniform", "popularity"):
            raise ValueError(
                f"negative_sampling must be 'uniform' or 'popularity', got "
                f"{self.negative_sampling!r}"
            )
        if self.factors < 1 or self.iterations < 0:
            raise ValueError("factors must be >= 1 and iterations >= 0")
        matrix = check_user_items(user_items, allow_negative=False)
        matrix.eliminate_zeros()  # a zero strength is not a positive
        return matrix

    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        n_users, n_items = user_items.shape
        scale = 1.0 / np.sqrt(self.factors)
        self.user_factors_ = (rng.standard_normal((n_users, self.factors)) * scale * 0.1).astype(
            np.float32
        )
        self.item_factors_ = (rng.standard_normal((n_items, self.factors)) * scale * 0.1).astype(
            np.float32
        )
        self.item_bias_ = np.zeros(n_items, dtype=np.float32)
        self._row_of = np.repeat(
            np.arange(n_users, dtype=np.int32), np.diff(user_items.indptr)
        )
        counts = np.bincount(user_items.indices, minlength=n_items).astype(np.float64)
        self._cdf = np.cumsum(counts) / max(counts.sum(), 1.0)

    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        if user_items.nnz == 0:
            return 0.0
        seed = int(rng.integers(0, 2**31 - 1))
        with np.errstate(all="ignore"):
            loss, skipped = _kernels.bpr_epoch(
                user_items.indptr, user_items.indices, self._row_of, self.user_factors_,
                self.item_factors_, self.item_bias_, np.float32(self.learning_rate),
                np.float32(self.regularization), seed, self._cdf,
                self.negative_sampling == "popularity",
            )
        return float(loss)

    def _finalize(self, user_items: sp.csr_matrix) -> None:
        del self._row_of, self._cdf

    def _item_bias(self) -> np.ndarray:
        return self.item_bias_

    def fold_in(self, item_ids: Any, strengths: Any = None, steps: int = 30) -> np.ndarray:
        """Maximise this user's BPR objective over all (positive, negative) pairs.

        Item side fixed. The objective mean log sigmoid(s_i - s_j) - regularization |x|^2 is
        concave in x; ``steps`` Newton steps with exact pairs (no sampling) reach its maximum.
        ``strengths`` only select positives (BPR ignores magnitudes).
        """
        ids, values = self._fold_in_inputs(item_ids, strengths)
        ids = ids[values > 0]
        k = self.n_factors_
        x = np.zeros(k, dtype=np.float64)
        if ids.size == 0 or ids.size == self.n_items_:
            return x.astype(np.float32)
        Y = self.item_factors_.astype(np.float64)
        bias = self.item_bias_.astype(np.float64)
        negative = np.ones(self.n_items_, dtype=bool)
        negative[ids] = False
        Yp, Yn = Y[ids], Y[negative]
        bp, bn = bias[ids], bias[negative]
        pairs = ids.size * Yn.shape[0]
        for _ in range(steps):
            diff = (Yp @ x + bp)[:, None] - (Yn @ x + bn)[None, :]
            g = 0.5 * (1.0 - np.tanh(0.5 * diff))  # sigmoid(-diff), overflow-free
            w = g * (1.0 - g)
            gradient = (Yp.T @ g.sum(1) - Yn.T @ g.sum(0)) / pairs - 2 * self.regularization * x
            cross = Yp.T @ w @ Yn
            hessian = (
                (Yp.T * w.sum(1)) @ Yp + (Yn.T * w.sum(0)) @ Yn - cross - cross.T
            ) / pairs + 2 * self.regularization * np.eye(k)
            step = np.linalg.solve(hessian, gradient)
            x += step
            if np.abs(step).max() < 1e-6:
                break
        return x.astype(np.float32)
