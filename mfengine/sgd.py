"""Biased matrix factorization for explicit ratings, trained by SGD (Funk / Koren style)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine import _kernels
from mfengine.base import MatrixFactorization, RandomState
from mfengine.recommender import as_id_array


class SGD(MatrixFactorization):
    """Rating prediction r_ui = mean + b_u + b_i + p_u . q_i, squared error, L2 regularized.

    Each stored entry of ``user_items`` is one rating. Epochs visit the ratings in a fresh
    seeded permutation. Ranking (``recommend``) uses p_u . q_i + b_i (mean and b_u are the
    same for every item). The loss per epoch is the training RMSE seen during the epoch.
    """

    name = "sgd"
    _state_arrays = (
        "user_factors_", "item_factors_", "user_bias_", "item_bias_", "global_mean_",
        "rating_range_",
    )

    def __init__(
        self,
        factors: int = 100,
        regularization: float = 0.05,
        learning_rate: float = 0.007,
        iterations: int = 40,
        init_std: float = 0.1,
        random_state: RandomState = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.learning_rate = learning_rate
        self.iterations = iterations
        self.init_std = init_std
        self.random_state = random_state

    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        if self.factors < 1 or self.iterations < 0:
            raise ValueError("factors must be >= 1 and iterations >= 0")
        n_users, n_items = user_items.shape
        coo = user_items.tocoo()
        self._users = coo.row.astype(np.int32)
        self._items = coo.col.astype(np.int32)
        self._ratings = coo.data.astype(np.float32)
        mean = float(self._ratings.mean()) if self._ratings.size else 0.0
        self.global_mean_ = np.array(mean, dtype=np.float32)
        low, high = (
            (float(self._ratings.min()), float(self._ratings.max())) if self._ratings.size
            else (0.0, 0.0)
        )
        self.rating_range_ = np.array([low, high], dtype=np.float32)
        self.user_bias_ = np.zeros(n_users, dtype=np.float32)
        self.item_bias_ = np.zeros(n_items, dtype=np.float32)
        self.user_factors_ = (rng.standard_normal((n_users, self.factors)) * self.init_std).astype(
            np.float32
        )
        self.item_factors_ = (rng.standard_normal((n_items, self.factors)) * self.init_std).astype(
            np.float32
        )

    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        order = rng.permutation(self._ratings.size).astype(np.int64)
        with np.errstate(all="ignore"):
            total = _kernels.sgd_epoch(
                self._users, self._items, self._ratings, order, np.float32(self.global_mean_),
                self.user_bias_, self.item_bias_, self.user_factors_, self.item_factors_,
                np.float32(self.learning_rate), np.float32(self.regularization),
            )
        return float(np.sqrt(total / max(self._ratings.size, 1)))

    def _finalize(self, user_items: sp.csr_matrix) -> None:
        del self._users, self._items, self._ratings

    def _item_bias(self) -> np.ndarray:
        return self.item_bias_

    def predict(self, user_ids: Any, item_ids: Any, clip: bool = True) -> np.ndarray:
        """Predicted ratings for pairs (user_ids[k], item_ids[k]); clipped to the seen range."""
        self._check_fitted()
        users = as_id_array(user_ids, "user_ids")
        items = self._check_item_ids(item_ids)
        if users.shape != items.shape:
            raise ValueError("user_ids and item_ids must have the same length")
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise IndexError(f"user ids must be in [0, {self.n_users_})")
        prediction = (
            self.global_mean_
            + self.user_bias_[users]
            + self.item_bias_[items]
            + np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
        ).astype(np.float32)
        if clip:
            np.clip(prediction, self.rating_range_[0], self.rating_range_[1], out=prediction)
        return prediction

    def fold_in(self, item_ids: Any, strengths: Any = None) -> np.ndarray:
        """User vector minimising the SGD objective for these ratings, item side fixed.

        The per-user objective is a ridge regression in (p_u, b_u); it is solved exactly
        instead of by a few SGD steps (same minimum, no step-size to tune). ``strengths`` are
        ratings; default: the global mean (no information beyond the items themselves).
        """
        ids, values = self._fold_in_inputs(item_ids, strengths)
        if strengths is None:
            values = np.full(ids.size, float(self.global_mean_), dtype=np.float32)
        k = self.n_factors_
        if ids.size == 0:
            return np.zeros(k, dtype=np.float32)
        design = np.hstack([self.item_factors_[ids], np.ones((ids.size, 1), np.float32)]).astype(
            np.float64
        )
        target = values - float(self.global_mean_) - self.item_bias_[ids]
        # SGD applies the penalty once per rating visit, so it scales with the rating count.
        penalty = self.regularization * ids.size * np.eye(k + 1)
        solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
        return solution[:k].astype(np.float32)
