"""Bayesian personalised ranking (Rendle et al. 2009) with an item bias."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine import _kernels
from mfengine.base import MatrixFactorization, RandomState, check_user_items

# Negatives drawn per fold-in call when the catalogue has more. On a 5,000-item synthetic set
# (64 factors) the folded-in vectors' recall@20 of held-out items was 0.375-0.376 at 256, 512 and
# 1024 negatives and with every negative; 512 costs ~2.5 ms at 100k items and 50 positives
# (benchmarks/quality.py measures it).
FOLD_IN_NEGATIVES = 512
_MIN_FOLD_IN_NEGATIVES = 128
_MAX_FOLD_IN_PAIRS = 1 << 18  # 2 MB per float64 pairs array


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

    def fold_in(
        self,
        item_ids: Any,
        strengths: Any = None,
        steps: int = 30,
        negatives: int = FOLD_IN_NEGATIVES,
        random_state: int = 0,
    ) -> np.ndarray:
        """Maximise this user's BPR objective, item side fixed, in O(negatives x factors).

        The objective is the mean over (positive i, negative j) pairs of log sigmoid(s_i - s_j)
        minus regularization |x|^2; it is concave in x and ``steps`` Newton steps reach its
        maximum. When the catalogue has at most ``negatives`` items besides the positives every
        one of them is a negative (the exact objective). Otherwise ``negatives`` distinct
        negatives are drawn uniformly (without the positives), from a generator seeded by
        ``random_state`` and the item ids, so the same call always returns the same vector:
        the mean over the sample estimates the mean over all negatives without bias.

        Cost per Newton step: O(P m k + (P + m) k^2) for P positives and m negatives, whatever
        the catalogue's size; the pairs held at once are capped at ``_MAX_FOLD_IN_PAIRS``
        (fewer negatives for a user with very many positives, at least ``_MIN_FOLD_IN_NEGATIVES``
        of them, and a seeded sample of the positives beyond that).
        ``strengths`` only select positives (BPR ignores magnitudes).
        """
        ids, values = self._fold_in_inputs(item_ids, strengths)
        ids = ids[values > 0]
        k = self.n_factors_
        n_negative = self.n_items_ - ids.size
        if ids.size == 0 or n_negative == 0:
            return np.zeros(k, dtype=np.float32)
        rng = np.random.default_rng([int(random_state), zlib.crc32(ids.tobytes())])
        ids, negative = _fold_in_pairs(ids, n_negative, int(negatives), rng)
        Y = self.item_factors_
        Yp, Yn = Y[ids].astype(np.float64), Y[negative].astype(np.float64)
        bp = self.item_bias_[ids].astype(np.float64)
        bn = self.item_bias_[negative].astype(np.float64)
        return _newton_pairs(Yp, bp, Yn, bn, float(self.regularization), steps)


def _fold_in_pairs(
    positives: np.ndarray, n_negative: int, negatives: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) item ids for one fold-in: every negative when there are at most
    ``negatives``, else a uniform sample without replacement, capped at _MAX_FOLD_IN_PAIRS.

    ``positives`` are sorted and distinct; the r-th negative (0-based, in id order) is r plus
    the number of positives at or below it, so negatives are drawn without a pass over the
    catalogue and without rejection.
    """
    kept = positives
    max_positives = _MAX_FOLD_IN_PAIRS // _MIN_FOLD_IN_NEGATIVES
    if positives.size > max_positives:
        kept = np.sort(rng.choice(positives, max_positives, replace=False))
    m = min(max(negatives, 1), max(_MAX_FOLD_IN_PAIRS // kept.size, _MIN_FOLD_IN_NEGATIVES))
    if n_negative <= m:
        ranks = np.arange(n_negative, dtype=np.int64)
    else:
        ranks = np.sort(rng.choice(n_negative, m, replace=False))
    # every positive, sampled out or not, is skipped: none of them is a negative
    shifted = positives - np.arange(positives.size)
    return kept, ranks + np.searchsorted(shifted, ranks, side="right")


def _newton_pairs(
    Yp: np.ndarray, bp: np.ndarray, Yn: np.ndarray, bn: np.ndarray, regularization: float,
    steps: int,
) -> np.ndarray:
    """argmax_x mean_{i,j} log sigmoid((Yp x + bp)_i - (Yn x + bn)_j) - regularization |x|^2."""
    k = Yp.shape[1]
    x = np.zeros(k, dtype=np.float64)
    pairs = Yp.shape[0] * Yn.shape[0]
    ridge = 2 * regularization * np.eye(k)
    for _ in range(steps):
        diff = (Yp @ x + bp)[:, None] - (Yn @ x + bn)[None, :]
        g = 0.5 * (1.0 - np.tanh(0.5 * diff))  # sigmoid(-diff), overflow-free
        w = g * (1.0 - g)
        gradient = (Yp.T @ g.sum(1) - Yn.T @ g.sum(0)) / pairs - 2 * regularization * x
        cross = Yp.T @ (w @ Yn)
        hessian = (
            (Yp.T * w.sum(1)) @ Yp + (Yn.T * w.sum(0)) @ Yn - cross - cross.T
        ) / pairs + ridge
        step = np.linalg.solve(hessian, gradient)
        x += step
        if np.abs(step).max() < 1e-6:
            break
    return x.astype(np.float32)
