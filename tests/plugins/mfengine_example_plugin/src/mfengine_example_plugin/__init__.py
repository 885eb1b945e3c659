"""A third-party mfengine strategy: PureSVD (Cremonesi et al. 2010) by randomized SVD.

Exists to prove the plugin path: it is installed as its own distribution, found through the
``mfengine.strategies`` entry-point group and run through mfengine's conformance suite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.base import MatrixFactorization, RandomState


class PureSVD(MatrixFactorization):
    """Item factors = top right singular vectors of the user-item matrix; user = row @ V.

    ``iterations`` power iterations refine a randomized range finder (Halko et al.).
    """

    name = "puresvd"

    def __init__(
        self, factors: int = 32, iterations: int = 4, regularization: float = 0.0,
        random_state: RandomState = None,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.random_state = random_state

    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        n_users, n_items = user_items.shape
        self.user_factors_ = np.zeros((n_users, self.factors), dtype=np.float32)
        # the current subspace basis lives in item_factors_ between iterations
        self.item_factors_ = rng.standard_normal((n_items, self.factors)).astype(np.float32)

    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        # one power iteration: basis <- orth(R^T R basis)
        current = self.item_factors_.astype(np.float64)
        if not np.isfinite(current).all():
            # LAPACK rejects NaN; leave it in place so the base class reports divergence
            return float("nan")
        basis, _ = np.linalg.qr(user_items.T @ (user_items @ current))
        self.item_factors_ = self._rotate(user_items, basis).astype(np.float32)
        self.user_factors_ = np.asarray(user_items @ self.item_factors_, dtype=np.float32)
        reconstruction = self.user_factors_ @ self.item_factors_.T
        return float(np.sum((user_items.toarray() - reconstruction) ** 2)) / max(
            user_items.nnz, 1
        )

    def _rotate(self, user_items: sp.csr_matrix, basis: np.ndarray) -> np.ndarray:
        # singular vectors inside the current subspace, sorted by singular value
        _, _, vt = np.linalg.svd(user_items @ basis, full_matrices=False)
        vectors = basis @ vt.T
        # fix signs so that the factors are a deterministic function of the data and seed
        signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
        return vectors * np.where(signs == 0, 1.0, signs)

    def fold_in(self, item_ids: Any, strengths: Any = None) -> np.ndarray:
        """Projection of the user's row on the item factors (exact for PureSVD)."""
        ids, values = self._fold_in_inputs(item_ids, strengths)
        return (values @ self.item_factors_[ids]).astype(np.float32)
