"""Baseline recommenders that are also the platform's fallbacks.

Both follow the strategies' interface (``fit(user_items) -> self``; ``recommend(user_ids,
user_items, n, filter_seen, items, exclude) -> (ids, scores)`` of shape (len(user_ids), n), best
first, padded with -1 / -inf; ``save``/``load`` to one ``.npz`` read with
``allow_pickle=False``), so the same evaluation runs on them, and they add what serving needs
for a user known only by a list of items: ``recommend_for_items(item_ids, weights, n,
exclude)``.

- :class:`PopularityRecommender`: items ranked by how many users interacted (or summed
  strength), optionally decayed by recency, optionally per category.
- :class:`ContentRecommender`: items described by tokens (category, tags, attributes) ->
  TF-IDF vectors, L2-normalised; a user's profile is the strength-weighted mean of the vectors of
  what they interacted with; score = profile . item vector. Items without interactions (new
  items) are scored like any other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from mfengine._baseline_kernels import _content_top_n, _ranked_top_n
from mfengine.recommender import Recommender, read_artifact
from mfengine.topn import top_n  # noqa: F401 (re-exported: serving imports it from here)


def _ids(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


class _Baseline(Recommender):
    """Shared recommend machinery: subclasses fill the top-n of a block of history rows."""

    _fitted_attributes: ClassVar[tuple[str, ...]] = ("n_items_",)

    def _candidate_mask(self, items: Any, exclude: Any) -> np.ndarray:
        allowed = np.ones(self.n_items_, dtype=bool)
        if items is not None:
            allowed[:] = False
            ids = _ids(items)
            allowed[ids[(ids >= 0) & (ids < self.n_items_)]] = True
        if exclude is not None:
            ids = _ids(exclude)
            allowed[ids[(ids >= 0) & (ids < self.n_items_)]] = False
        return allowed

    def recommend(
        self,
        user_ids: Any,
        user_items: sp.spmatrix | None = None,
        n: int = 10,
        filter_seen: bool = True,
        items: Any = None,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per user. ``user_items`` rows are indexed by user id (as for the
        strategies) and give each user's history: the profile for content, the seen filter."""
        scalar, users, history = self._history_rows(user_ids, user_items, filter_seen)
        if history is None:
            history = sp.csr_matrix((len(users), self.n_items_), dtype=np.float32)
        ids, scores = self._recommend_history(history, n, filter_seen, items, exclude)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def _recommend_history(
        self, history: sp.csr_matrix, n: int, filter_seen: bool, items: Any, exclude: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed = self._candidate_mask(items, exclude)
        count = history.shape[0]
        ids = np.full((count, n), -1, dtype=np.int64)
        out = np.full((count, n), -np.inf, dtype=np.float32)
        if count and n > 0:
            history = sp.csr_matrix(history)
            if filter_seen:
                seen_indptr = history.indptr.astype(np.int64)
                seen_indices = history.indices.astype(np.int64)
            else:
                seen_indptr = np.zeros(count + 1, dtype=np.int64)
                seen_indices = np.zeros(0, dtype=np.int64)
            self._top_n_into(history, seen_indptr, seen_indices, allowed, n, ids, out)
        return ids, out

    def _top_n_into(
        self,
        history: sp.csr_matrix,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
        allowed: np.ndarray,
        n: int,
        ids: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """Fill ``ids``/``out`` (prefilled -1 / -inf) with each history row's top-n among the
        ``allowed`` items minus the row's seen entries (CSR ``seen_*``), ordered as
        :func:`top_n` orders a dense block of the model's scores."""
        raise NotImplementedError

    def recommend_for_items(
        self,
        item_ids: Any,
        weights: Any = None,
        n: int = 10,
        exclude: Any = None,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Recommendations for a user known only by a list of item ids (a session or a short
        history, e.g. a cold user): 1-d ``(ids, scores)``; the given items are not returned."""
        self._check_fitted()
        ids = _ids(item_ids)
        valid = (ids >= 0) & (ids < self.n_items_)
        w = np.ones(len(ids)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if len(w) != len(ids):
            raise ValueError("weights must have one entry per item id")
        history = sp.csr_matrix(
            (w[valid], (np.zeros(valid.sum(), dtype=np.int64), ids[valid])),
            shape=(1, self.n_items_),
        )
        history.sum_duplicates()
        out_ids, out_scores = self._recommend_history(history, n, True, items, exclude)
        return out_ids[0], out_scores[0]

    # -- artifacts ---------------------------------------------------------------------------
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        self._check_fitted()
        return {"baseline": self.name, "params": self.get_params(), "n_items": self.n_items_}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> _Baseline:
        """Read a baseline written by :meth:`save` (``allow_pickle=False``)."""
        meta, arrays = read_artifact(path)
        if meta.get("baseline") != cls.name:
            raise ValueError(f"{path} does not hold a {cls.__name__}")
        model = cls(**meta["params"])
        model._restore(arrays)
        model.n_items_ = int(meta["n_items"])
        return model


class PopularityRecommender(_Baseline):
    """Most popular items first.

    ``use_strength``: rank by summed strengths instead of the number of users.
    ``half_life_days``: with ``timestamps`` given to fit (a matrix with the same sparsity as
    user_items holding each interaction's last time, unix seconds), each interaction counts
    ``exp(-ln 2 * age / half_life)`` with age measured from ``reference_time`` (default: the
    newest timestamp, i.e. the training cutoff side, never the wall clock).
    """

    name = "popularity"

    def __init__(
        self,
        use_strength: bool = False,
        half_life_days: float | None = None,
        reference_time: int | None = None,
    ) -> None:
        self.use_strength = use_strength
        self.half_life_days = half_life_days
        self.reference_time = reference_time

    def fit(
        self,
        user_items: sp.spmatrix,
        timestamps: sp.spmatrix | None = None,
        item_categories: Sequence[Any] | np.ndarray | None = None,
        callback: Any = None,
    ) -> PopularityRecommender:
        matrix = sp.csr_matrix(user_items, dtype=np.float64)
        matrix.sum_duplicates()
        weights = matrix.data.copy() if self.use_strength else np.ones(matrix.nnz)
        if self.half_life_days is not None:
            if timestamps is None:
                raise ValueError("half_life_days needs timestamps (same sparsity as user_items)")
            ts = sp.csr_matrix(timestamps, dtype=np.float64)
            ts.sum_duplicates()
            if ts.shape != matrix.shape or ts.nnz != matrix.nnz:
                raise ValueError("timestamps must have the same sparsity as user_items")
            ref = float(ts.data.max()) if self.reference_time is None else self.reference_time
            age_days = np.maximum(ref - ts.data, 0.0) / 86400.0
            weights = weights * np.exp(-math.log(2.0) * age_days / float(self.half_life_days))
        cols = matrix.indices
        self.item_scores_ = np.bincount(cols, weights=weights, minlength=matrix.shape[1])
        self.n_users_ = int(matrix.shape[0])
        self.n_items_ = int(matrix.shape[1])
        self.loss_history_ = np.zeros(0)
        if item_categories is not None:
            cats = np.asarray(item_categories)
            if len(cats) != self.n_items_:
                raise ValueError("item_categories must have one entry per item")
            self.item_categories_ = cats.astype(str) if cats.dtype == object else cats
        return self

    def _top_n_into(
        self,
        history: sp.csr_matrix,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
        allowed: np.ndarray,
        n: int,
        ids: np.ndarray,
        out: np.ndarray,
    ) -> None:
        # Every user shares one ranking: walk it, skipping each user's seen items.
        scores = np.where(allowed, np.asarray(self.item_scores_, dtype=np.float64), -np.inf)
        candidates = np.flatnonzero(scores > -np.inf)  # drops -inf and NaN
        # stable sort: equal scores stay in ascending id order
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        _ranked_top_n(
            order, scores[order], seen_indptr, seen_indices, self.n_items_, n, ids, out
        )

    def top_items(
        self, n: int = 10, exclude: Any = None, category: Any = None, items: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The global (or one category's) top-n, for an anonymous user: 1-d (ids, scores)."""
        self._check_fitted()
        allowed = self._candidate_mask(items, exclude)
        if category is not None:
            if not hasattr(self, "item_categories_"):
                raise ValueError("fit with item_categories to use per-category top lists")
            allowed &= self.item_categories_ == category
        scores = np.where(allowed, self.item_scores_, -np.inf)
        ids, out = top_n(scores[None, :], n)
        return ids[0], out[0]

    def category_top_lists(self, n: int = 10) -> dict[str, list[int]]:
        """Top-n item ids per category (JSON-able), e.g. to precompute fallbacks."""
        self._check_fitted()
        if not hasattr(self, "item_categories_"):
            raise ValueError("fit with item_categories to use per-category top lists")
        out: dict[str, list[int]] = {}
        for cat in np.unique(self.item_categories_):
            ids, _ = self.top_items(n, category=cat)
            out[str(cat)] = [int(i) for i in ids if i >= 0]
        return out

    def _artifact_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"item_scores_": self.item_scores_, "n_users_": np.array([self.n_users_])}
        if hasattr(self, "item_categories_"):
            arrays["item_categories_"] = self.item_categories_
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores_ = arrays["item_scores_"]
        self.n_users_ = int(arrays["n_users_"][0])
        if "item_categories_" in arrays:
            self.item_categories_ = arrays["item_categories_"]


def item_tokens(
    n_items: int,
    categories: Sequence[Any] | None = None,
    tags: Sequence[Iterable[Any]] | None = None,
    attributes: Sequence[dict[str, Any]] | None = None,
) -> list[list[str]]:
    """Describe items as prefixed tokens ("category=x", "tag=y", "key=value") for TF-IDF."""
    out: list[list[str]] = [[] for _ in range(n_items)]
    for name, column in (("categories", categories), ("tags", tags), ("attributes", attributes)):
        if column is not None and len(column) != n_items:
            raise ValueError(f"{name} must have one entry per item")
    for i in range(n_items):
        if categories is not None and categories[i] is not None and categories[i] != "":
            out[i].append(f"category={categories[i]}")
        if tags is not None and tags[i] is not None:
            out[i].extend(f"tag={t}" for t in tags[i])
        if attributes is not None and attributes[i]:
            out[i].extend(f"{k}={v}" for k, v in sorted(attributes[i].items()))
    return out


class ContentRecommender(_Baseline):
    """TF-IDF content-based recommender (scipy sparse, no scikit-learn).

    tf: token count within the item (``sublinear_tf``: 1 + log tf); idf = ln((1 + n) / (1 +
    df)) + 1; rows L2-normalised. A user's profile is the strength-weighted mean of the
    vectors of their items; score = profile . item. ``popularity_tiebreak`` adds a tiny
    popularity term (< the smallest content difference that matters) so items with identical
    descriptions come out most-popular first instead of by id. A user with no history (or only
    items without tokens) gets an empty, -1 padded list: the caller falls back to popularity.
    """

    name = "content"

    def __init__(
        self, sublinear_tf: bool = False, min_df: int = 1, popularity_tiebreak: bool = True
    ) -> None:
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df
        self.popularity_tiebreak = popularity_tiebreak

    def fit(
        self,
        user_items: sp.spmatrix,
        item_tokens: Sequence[Iterable[str]],
        callback: Any = None,
    ) -> ContentRecommender:
        """``item_tokens``: one list of tokens per item column (see :func:`item_tokens`)."""
        matrix = sp.csr_matrix(user_items)
        if len(item_tokens) != matrix.shape[1]:
            raise ValueError("item_tokens must have one entry per item column")
        counts = self._count_tokens(item_tokens, vocabulary=None)
        df = np.diff(sp.csc_matrix(counts).indptr)
        keep = np.flatnonzero(df >= self.min_df)
        counts = counts[:, keep]
        self.vocabulary_ = self._vocab_all[keep]
        del self._vocab_all
        n = counts.shape[0]
        self.idf_ = np.log((1.0 + n) / (1.0 + df[keep])) + 1.0
        self.item_vectors_ = self._weigh(counts)
        pop = np.diff(sp.csc_matrix(matrix).indptr).astype(np.float64)
        self.item_popularity_ = pop / max(pop.max(), 1.0) if pop.size else pop
        self.n_items_ = int(matrix.shape[1])
        self.loss_history_ = np.zeros(0)
        return self

    def _count_tokens(
        self, item_tokens: Sequence[Iterable[str]], vocabulary: np.ndarray | None
    ) -> sp.csr_matrix:
        rows: list[int] = []
        toks: list[str] = []
        for i, tokens in enumerate(item_tokens):
            for t in tokens:
                rows.append(i)
                toks.append(str(t))
        tok_arr = np.asarray(toks, dtype=str) if toks else np.zeros(0, dtype="<U1")
        row_arr = np.asarray(rows, dtype=np.int64)
        if vocabulary is None:
            vocab, cols = np.unique(tok_arr, return_inverse=True)
            self._vocab_all = vocab
        else:
            vocab = vocabulary
            pos = np.searchsorted(vocab, tok_arr) if len(vocab) else np.zeros(len(tok_arr), int)
            pos = np.minimum(pos, max(len(vocab) - 1, 0))
            known = (vocab[pos] == tok_arr) if len(vocab) else np.zeros(len(tok_arr), bool)
            row_arr, cols = row_arr[known], pos[known]
        m = sp.csr_matrix(
            (np.ones(len(row_arr)), (row_arr, np.asarray(cols).ravel())),
            shape=(len(item_tokens), len(vocab)),
        )
        m.sum_duplicates()
        return m

    def _weigh(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        tf = counts.astype(np.float64)
        if self.sublinear_tf:
            tf.data = 1.0 + np.log(tf.data)
        x = sp.csr_matrix(tf @ sp.diags(self.idf_))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        x = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x)
        x.eliminate_zeros()
        return x

    def transform_items(self, item_tokens: Sequence[Iterable[str]]) -> sp.csr_matrix:
        """TF-IDF vectors of item descriptions under the fitted vocabulary."""
        self._check_fitted()
        return self._weigh(self._count_tokens(item_tokens, vocabulary=self.vocabulary_))

    def add_items(self, item_tokens: Sequence[Iterable[str]]) -> np.ndarray:
        """Append new catalogue items (no interactions yet); returns their new ids."""
        self._check_fitted()
        vectors = self.transform_items(item_tokens)
        first = self.n_items_
        self.item_vectors_ = sp.vstack([self.item_vectors_, vectors]).tocsr()
        self.item_popularity_ = np.r_[self.item_popularity_, np.zeros(vectors.shape[0])]
        self.n_items_ += vectors.shape[0]
        return np.arange(first, self.n_items_)

    def user_profiles(self, history: sp.spmatrix) -> sp.csr_matrix:
        """Strength-weighted mean of item vectors per history row (users x terms)."""
        h = sp.csr_matrix(history, dtype=np.float64)
        sums = np.asarray(h.sum(axis=1)).ravel()
        scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        return sp.csr_matrix(sp.diags(scale) @ h @ self.item_vectors_)

    def _top_n_into(
        self,
        history: sp.csr_matrix,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
        allowed: np.ndarray,
        n: int,
        ids: np.ndarray,
        out: np.ndarray,
    ) -> None:
        # Scores are user_profiles(history) @ item_vectors_.T (+ the popularity tiebreak),
        # computed per user in a compiled kernel without materialising users x items blocks.
        h = sp.csr_matrix(history, dtype=np.float64)
        sums = np.asarray(h.sum(axis=1)).ravel()
        scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        weighted = sp.csr_matrix(sp.diags(scale) @ h)  # as in user_profiles
        vectors = sp.csr_matrix(self.item_vectors_, dtype=np.float64)
        by_term = sp.csr_matrix(vectors.T)
        tiebreak = (
            1e-9 * np.asarray(self.item_popularity_, dtype=np.float64)
            if self.popularity_tiebreak
            else np.zeros(self.n_items_)
        )
        _content_top_n(
            weighted.indptr.astype(np.int64),
            weighted.indices.astype(np.int64),
            weighted.data,
            seen_indptr,
            seen_indices,
            vectors.indptr.astype(np.int64),
            vectors.indices.astype(np.int64),
            vectors.data,
            by_term.indptr.astype(np.int64),
            by_term.indices.astype(np.int64),
            by_term.data,
            tiebreak,
            allowed,
            n,
            ids,
            out,
        )

    def _artifact_arrays(self) -> dict[str, np.ndarray]:
        v = self.item_vectors_
        return {
            "vocabulary_": self.vocabulary_,
            "idf_": self.idf_,
            "item_popularity_": self.item_popularity_,
            "vectors_data": v.data,
            "vectors_indices": v.indices,
            "vectors_indptr": v.indptr,
            "vectors_shape": np.asarray(v.shape, dtype=np.int64),
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.vocabulary_ = arrays["vocabulary_"]
        self.idf_ = arrays["idf_"]
        self.item_popularity_ = arrays["item_popularity_"]
        self.item_vectors_ = sp.csr_matrix(
            (arrays["vectors_data"], arrays["vectors_indices"], arrays["vectors_indptr"]),
            shape=tuple(int(x) for x in arrays["vectors_shape"]),
        )
