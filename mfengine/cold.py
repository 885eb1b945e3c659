"""Vectors for what a model has not seen: new items placed in its factor space by their
content, and users without events placed at the mean of their segment.

`ContentToFactors` is a ridge regression from an item's content tokens (those of
`mfengine.baselines.item_tokens`: the category one-hot, tags and attributes hashed into a
fixed number of buckets) to the item vectors a model learned. A new item is placed

- by the mapping ("attributes") when it has a tag or attribute token seen in training,
- at its category's mean vector ("category") when it has only a known category,
- at the mean of all item vectors ("catalogue") otherwise.

Regression towards the mean makes mapped vectors short, and in an inner-product search the
norm decides whether an item beats the trained ones at all (ALS: norm grows with
popularity). So an item placed by its content or category keeps the regression's direction at
the `norm_quantile` of the trained items' norms (0.9; None keeps the regression's own norm):
benchmarks/cold.py measured recall@20 of held-out items in the whole catalogue 0.55 against
0.04 without on a synthetic shop; on MovieLens 0.004 against 0.000, at a 4% cost to the users'
other test items (a 0.99 quantile lifts the new items to 0.038 there, at a 36% cost; a norm
predicted from content, the same ridge fitted to the log norms, leaves them at 0.000). A
serving exploration share, filled by the user's score with these vectors, lifts the new
items further for less than a higher quantile costs (benchmarks/RESULTS.md, *Cold start*).

`SegmentVectors` keeps the mean user vector of each segment (an onboarding attribute).
Both are saved as `.npz` and read back without pickle.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import IO

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from mfengine.recommender import NotFittedError

PLACEMENTS = ("attributes", "category", "catalogue")
CATEGORY_PREFIX = "category="


def _hashed(token: str, buckets: int) -> int:
    """A bucket that is the same in every process (Python's hash() is salted per process)."""
    return zlib.crc32(token.encode("utf-8")) % buckets


def split_tokens(tokens: Sequence[str]) -> tuple[str, list[str]]:
    """(the category, the other tokens) of one item's `item_tokens` entry."""
    category, others = "", []
    for token in tokens:
        if token.startswith(CATEGORY_PREFIX) and not category:
            category = token[len(CATEGORY_PREFIX):]
        else:
            others.append(token)
    return category, others


class ContentToFactors:
    """Ridge regression from item content to item vectors (see the module's docstring).

    `regularization` is the ridge penalty on the L2-normalised feature rows; categories beyond
    the `max_categories` most frequent are hashed like the other tokens, which bounds the
    normal equations at (max_categories + hashed_buckets) squared."""

    def __init__(self, regularization: float = 1.0, hashed_buckets: int = 1024,
                 max_categories: int = 1024, norm_quantile: float | None = 0.9) -> None:
        self.regularization = regularization
        self.hashed_buckets = hashed_buckets
        self.max_categories = max_categories
        self.norm_quantile = norm_quantile

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, item_tokens: Sequence[Sequence[str]], item_vectors: np.ndarray
            ) -> ContentToFactors:
        vectors = np.asarray(item_vectors, dtype=np.float64)
        if vectors.ndim != 2 or len(item_tokens) != vectors.shape[0]:
            raise ValueError("one token list per item vector")
        if not np.isfinite(vectors).all():
            raise ValueError("item vectors must be finite")
        if self.regularization <= 0:
            raise ValueError("regularization must be positive")
        if self.norm_quantile is not None and not 0 <= self.norm_quantile <= 1:
            raise ValueError("norm_quantile must be between 0 and 1, or None")
        split = [split_tokens(tokens) for tokens in item_tokens]
        categories = np.array([c for c, _ in split], dtype=str)
        self.global_mean_ = vectors.mean(axis=0) if len(vectors) else np.zeros(vectors.shape[1])
        self._fit_category_means(categories, vectors)
        names, counts = np.unique(categories[categories != ""], return_counts=True)
        order = np.argsort(-counts, kind="stable")[: self.max_categories]
        self.onehot_categories_ = np.sort(names[order]).astype(str)
        features = self._features(split)
        self.columns_ = np.flatnonzero(np.diff(features.tocsc().indptr) > 0)
        design = features[:, self.columns_]
        gram = (design.T @ design).toarray()
        gram[np.diag_indices_from(gram)] += self.regularization
        rhs = design.T @ (vectors - self.global_mean_)
        self.weights_ = (scipy.linalg.solve(gram, rhs, assume_a="pos") if len(self.columns_)
                         else np.zeros((0, vectors.shape[1])))
        self.weights_ = self.weights_.astype(np.float32)
        self.global_mean_ = self.global_mean_.astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1)
        self.placed_norm_ = float(np.quantile(norms, self.norm_quantile)
                                  if self.norm_quantile is not None and norms.size else 0.0)
        return self

    def _fit_category_means(self, categories: np.ndarray, vectors: np.ndarray) -> None:
        known = categories != ""
        names, inverse = np.unique(categories[known], return_inverse=True)
        sums = np.zeros((len(names), vectors.shape[1]))
        np.add.at(sums, inverse, vectors[known])
        counts = np.bincount(inverse, minlength=len(names))
        self.categories_ = names.astype(str)
        self.category_means_ = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def _features(self, split: list[tuple[str, list[str]]]) -> sp.csr_matrix:
        """One row per item: its category's one-hot column (or hashed bucket), then its other
        tokens' hashed buckets; rows L2-normalised so no item weighs by its token count."""
        n_onehot = len(self.onehot_categories_)
        rows, cols = [], []
        for row, (category, others) in enumerate(split):
            if category:
                at = np.searchsorted(self.onehot_categories_, category)
                if at < n_onehot and self.onehot_categories_[at] == category:
                    cols.append(int(at))
                else:
                    cols.append(n_onehot + _hashed(CATEGORY_PREFIX + category,
                                                   self.hashed_buckets))
                rows.append(row)
            for token in others:
                rows.append(row)
                cols.append(n_onehot + _hashed(token, self.hashed_buckets))
        matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                               shape=(len(split), n_onehot + self.hashed_buckets))
        matrix.sum_duplicates()
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix

    # -- placing ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("ContentToFactors is not fitted yet: call fit() first")

    @property
    def dimensions(self) -> int:
        self._check_fitted()
        return int(self.global_mean_.size)

    def transform(self, item_tokens: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str]]:
        """(float32 vectors, placement per item: one of PLACEMENTS)."""
        self._check_fitted()
        split = [split_tokens(tokens) for tokens in item_tokens]
        out = np.tile(self.global_mean_, (len(split), 1))
        placements = ["catalogue"] * len(split)
        if not split:
            return out, placements
        mapped = self._features(split)[:, self.columns_]
        # An item is placed by the mapping when a tag or attribute token of it was seen in
        # training; a category alone is better served by the category's exact mean.
        attribute_seen = self._attribute_columns_seen(split)
        predicted = np.asarray(mapped @ self.weights_) + self.global_mean_
        category_rows = self.category_index([c for c, _ in split])
        for row in range(len(split)):
            if attribute_seen[row]:
                out[row], placements[row] = self._loud(predicted[row]), "attributes"
            elif category_rows[row] >= 0:
                out[row] = self._loud(self.category_means_[category_rows[row]])
                placements[row] = "category"
        return out.astype(np.float32), placements

    def _loud(self, vector: np.ndarray) -> np.ndarray:
        """The vector at the placed norm (see the module's docstring), when there is one."""
        norm = float(np.linalg.norm(vector))
        if not self.placed_norm_ or norm < 1e-12:
            return vector
        return vector * (self.placed_norm_ / norm)

    def _attribute_columns_seen(self, split: list[tuple[str, list[str]]]) -> np.ndarray:
        offset = len(self.onehot_categories_)
        seen = set(self.columns_.tolist())
        return np.array([any(offset + _hashed(t, self.hashed_buckets) in seen for t in others)
                         for _c, others in split], dtype=bool)

    def category_index(self, categories: Sequence[str]) -> np.ndarray:
        """Row of each category in `category_means_`, -1 for an unknown or empty one."""
        self._check_fitted()
        names = self.categories_
        at = np.searchsorted(names, np.asarray(categories, dtype=str)) if len(names) else (
            np.zeros(len(categories), dtype=np.int64))
        at = np.minimum(at, max(len(names) - 1, 0))
        found = (np.asarray(categories, dtype=str) == names[at]) if len(names) else (
            np.zeros(len(categories), dtype=bool))
        return np.where(found, at, -1)

    # -- artifacts --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str] | IO[bytes]) -> None:
        self._check_fitted()
        np.savez(path, regularization=np.float64(self.regularization),
                 hashed_buckets=np.int64(self.hashed_buckets),
                 max_categories=np.int64(self.max_categories),
                 norm_quantile=np.float64(np.nan if self.norm_quantile is None
                                          else self.norm_quantile),
                 placed_norm=np.float64(self.placed_norm_),
                 onehot_categories=self.onehot_categories_, columns=self.columns_,
                 weights=self.weights_, global_mean=self.global_mean_,
                 categories=self.categories_, category_means=self.category_means_)

    @classmethod
    def load(cls, source) -> ContentToFactors:
        """From a path or an open binary file; no pickle."""
        with np.load(source, allow_pickle=False) as archive:
            quantile = float(archive["norm_quantile"])
            mapping = cls(regularization=float(archive["regularization"]),
                          hashed_buckets=int(archive["hashed_buckets"]),
                          max_categories=int(archive["max_categories"]),
                          norm_quantile=None if np.isnan(quantile) else quantile)
            mapping.placed_norm_ = float(archive["placed_norm"])
            mapping.onehot_categories_ = archive["onehot_categories"].astype(str)
            mapping.columns_ = archive["columns"]
            mapping.weights_ = archive["weights"]
            mapping.global_mean_ = archive["global_mean"]
            mapping.categories_ = archive["categories"].astype(str)
            mapping.category_means_ = archive["category_means"]
        return mapping


class SegmentVectors:
    """The mean user vector per segment (users without a segment are left out); a segment
    needs `min_users` users to get a vector."""

    def __init__(self, min_users: int = 1) -> None:
        self.min_users = min_users

    def fit(self, segments: Sequence[str | None], user_vectors: np.ndarray) -> SegmentVectors:
        vectors = np.asarray(user_vectors, dtype=np.float64)
        if vectors.ndim != 2 or len(segments) != vectors.shape[0]:
            raise ValueError("one segment (or None) per user vector")
        labels = np.array(["" if s is None else str(s) for s in segments], dtype=str)
        known = labels != ""
        names, inverse = np.unique(labels[known], return_inverse=True)
        sums = np.zeros((len(names), vectors.shape[1]))
        np.add.at(sums, inverse, vectors[known])
        counts = np.bincount(inverse, minlength=len(names))
        keep = counts >= self.min_users
        self.segments_ = names[keep].astype(str)
        self.counts_ = counts[keep].astype(np.int64)
        self.vectors_ = (sums[keep] / np.maximum(counts[keep], 1)[:, None]).astype(np.float32)
        return self

    def vector(self, segment: str | None) -> np.ndarray | None:
        """The segment's mean vector, None for an unknown segment."""
        if not hasattr(self, "vectors_"):
            raise NotFittedError("SegmentVectors is not fitted yet: call fit() first")
        if not segment or not len(self.segments_):
            return None
        at = int(np.searchsorted(self.segments_, str(segment)))
        if at >= len(self.segments_) or self.segments_[at] != str(segment):
            return None
        return self.vectors_[at]

    def save(self, path: str | os.PathLike[str] | IO[bytes]) -> None:
        np.savez(path, min_users=np.int64(self.min_users), segments=self.segments_,
                 counts=self.counts_, vectors=self.vectors_)

    @classmethod
    def load(cls, source) -> SegmentVectors:
        with np.load(source, allow_pickle=False) as archive:
            segments = cls(min_users=int(archive["min_users"]))
            segments.segments_ = archive["segments"].astype(str)
            segments.counts_ = archive["counts"]
            segments.vectors_ = archive["vectors"]
        return segments
