"""A fitted model evaluated in another id space: a previous model version on a new split.

Comparing a candidate with the model it would replace means both answering the same test on the
same information. The previous model's own user vectors belong to its data and time (they may
even have seen part of the new test period), so users are folded in from their rows of the new
split's training matrix with the previous model's item factors; items are matched by id, and an
item the previous model never saw is never recommended by it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.ids import positions


class RemappedModel:
    """``recommend`` like a fitted model of the new space (the interface evaluation uses).

    ``item_columns[j]``: the model's column for item j of the new space, -1 where it has none.
    """

    def __init__(self, model: Any, item_columns: Any):
        self.model = model
        self.item_columns = np.asarray(item_columns, dtype=np.int64)
        self.name = f"{getattr(model, 'name', type(model).__name__)} (remapped)"
        self.n_items_ = len(self.item_columns)
        known = np.flatnonzero(self.item_columns >= 0)
        self._candidates = self.item_columns[known]  # model columns it may recommend
        self._to_new = np.full(model.n_items_, -1, dtype=np.int64)
        self._to_new[self._candidates] = known

    @classmethod
    def from_ids(cls, model: Any, model_item_ids: Any, item_ids: Any) -> RemappedModel:
        """Match items by id: ``model_item_ids`` are the model's column ids (sorted),
        ``item_ids`` the new space's."""
        return cls(model, positions(np.asarray(model_item_ids, dtype=np.int64), item_ids))

    def recommend(self, user_ids: Any, user_items: sp.spmatrix, n: int = 10,
                  filter_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        users = np.atleast_1d(np.asarray(user_ids, dtype=np.int64))
        rows = sp.csr_matrix(user_items)[users]
        vectors = np.zeros((len(users), self.model.n_factors_), dtype=np.float32)
        seen_rows, seen_columns = [], []
        for i in range(len(users)):
            span = slice(rows.indptr[i], rows.indptr[i + 1])
            columns = self.item_columns[rows.indices[span]]
            known = columns >= 0
            if known.any():
                vectors[i] = self.model.fold_in(columns[known], rows.data[span][known])
                seen_rows.append(np.full(int(known.sum()), i))
                seen_columns.append(columns[known])
        seen = None
        if filter_seen:
            r = np.concatenate(seen_rows) if seen_rows else np.zeros(0, np.int64)
            c = np.concatenate(seen_columns) if seen_columns else np.zeros(0, np.int64)
            seen = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)),
                                 shape=(len(users), self.model.n_items_))
        ids, scores = self.model.recommend_vectors(vectors, n=n, seen=seen,
                                                   items=self._candidates)
        valid = ids >= 0
        ids[valid] = self._to_new[ids[valid]]
        if np.ndim(user_ids) == 0:
            return ids[0], scores[0]
        return ids, scores
