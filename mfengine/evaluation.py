"""Recommendation metrics over point-in-time splits (:mod:`mfengine.splits`, re-exported here).

The definitions below are the project's benchmark protocol: the platform's evaluation reports
and the benchmarks compute exactly these.

Ranking metrics (users with at least one test positive only; train items are excluded from
the candidates by the recommender, so a test item already seen in training is dropped):

- Recall@K = hits / min(K, |test_u|)
- NDCG@K: binary gains, DCG = sum_r hit_r / log2(r + 1) with r from 1, IDCG over min(K, |test_u|)
- HitRate@K = share of users with at least one hit
- MAP@K = (sum over hit ranks r of precision@r) / min(K, |test_u|)

Beyond accuracy:

- coverage@K: share of the catalogue appearing in at least one user's top K;
- novelty@K: mean over recommended slots of -log2 p(i), where p(i) is the share of train users
  who interacted with item i (items nobody touched count as 1 / n_users, to stay finite);
- gini@K: Gini coefficient of the recommendation counts over the whole catalogue (0 = every item
  recommended equally often, 1 = one item takes every slot);
- top1pct_share@K: share of slots taken by the top 1% of items by train popularity.

Segments: cold users (<= 5 train interactions) and long-tail items (outside the top 20% of the
catalogue by train popularity; ranking metrics restricted to long-tail test items).

Everything is vectorised over users: hits are found by a sorted-key search of the test matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.splits import (  # noqa: F401 (re-exported: the splits' historical home)
    Split,
    global_time_split,
    split_summary,
    temporal_split,
    temporal_split_mask,
)

#: The ranking metric names, listed once for the engine and the platform.
RANKING_KEYS = ("recall", "ndcg", "hit_rate", "map")


# ---------------------------------------------------------------------------------------------
# ranking metrics


def _hits(recommended: np.ndarray, test: sp.csr_matrix, k: int) -> np.ndarray:
    """Boolean (users x k): is the item at rank r a test positive of that row's user.

    -1 (padding) and out-of-range ids never hit; a repeated item only counts once. Column r
    depends only on ranks <= r, so ``_hits(rec, test, K)[:, :k] == _hits(rec, test, k)``.
    """
    rec = np.asarray(recommended)
    if rec.ndim != 2 or rec.shape[0] != test.shape[0]:
        raise ValueError("recommended must be a 2-d array with one row per test row")
    if rec.shape[1] < k:
        raise ValueError(f"recommended has {rec.shape[1]} columns, fewer than k={k}")
    rec = rec[:, :k].astype(np.int64)
    n_users, n_items = test.shape
    test = test.tocsr()
    if not test.has_sorted_indices:
        test = test.sorted_indices()
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(test.indptr))
    test_keys = rows * n_items + test.indices.astype(np.int64)  # ascending
    valid = (rec >= 0) & (rec < n_items)
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, rec, 0)
    if len(test_keys) == 0:
        return np.zeros(rec.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(test_keys, keys), len(test_keys) - 1)
    hits = valid & (test_keys[pos] == keys)
    if k > 1:
        # A hit whose item already appears earlier in the row is a duplicate, not a second
        # hit. Only hit slots can change, so only those rows are compared.
        hit_row, hit_col = np.nonzero(hits)
        if hit_row.size:
            first = np.argmax(rec[hit_row] == rec[hit_row, hit_col][:, None], axis=1)
            dup = first < hit_col
            hits[hit_row[dup], hit_col[dup]] = False
    return hits


def _ranking_from_hits(hits: np.ndarray, n_pos: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-row recall/ndcg/hit/ap from a boolean (rows x k) hit matrix and the number of test
    positives per row."""
    hits = hits.astype(np.float64)
    evaluated = n_pos > 0
    denom = np.maximum(np.minimum(k, n_pos), 1)
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = hits @ discounts
    idcg = np.cumsum(discounts)[denom - 1]
    precision_at_r = np.cumsum(hits, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    ap = (precision_at_r * hits).sum(axis=1) / denom
    return {
        "recall": n_hits / denom,
        "ndcg": dcg / idcg,
        "hit_rate": (n_hits > 0).astype(np.float64),
        "map": ap,
        "evaluated": evaluated,
    }


def per_user_ranking_metrics(
    recommended: np.ndarray, test: sp.csr_matrix, k: int
) -> dict[str, np.ndarray]:
    """Per-row recall/ndcg/hit/ap arrays plus the mask of rows with a test positive."""
    test = sp.csr_matrix(test)
    return _ranking_from_hits(_hits(recommended, test, k), np.diff(test.indptr), k)


def _mean_ranking(per_user: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    n = int(mask.sum())
    out: dict[str, float] = {
        key: float(per_user[key][mask].mean()) if n else 0.0 for key in RANKING_KEYS
    }
    out["n_users"] = n
    return out


def ranking_metrics(
    recommended: np.ndarray, test: sp.csr_matrix, k: int, users: Any = None
) -> dict[str, float]:
    """Recall, NDCG, HitRate and MAP at k, averaged over users with >= 1 test positive.

    recommended: int array (rows x >= k) of item ids, best first, -1 padding allowed; row i is
    test row i, or test row ``users[i]`` when ``users`` is given. Returns floats plus
    ``n_users`` (how many users were averaged; the metrics are 0.0 when none).
    """
    test = sp.csr_matrix(test)
    if users is not None:
        test = test[np.asarray(users, dtype=np.int64)]
    per_user = per_user_ranking_metrics(recommended, test, k)
    return _mean_ranking(per_user, per_user["evaluated"])


def rating_metrics(predictions: Any, truth: Any) -> dict[str, float]:
    """RMSE and MAE of explicit rating predictions."""
    p = np.asarray(predictions, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError("predictions and truth must have the same shape")
    if p.size == 0:
        return {"rmse": 0.0, "mae": 0.0, "n": 0}
    err = p - t
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "n": int(p.size),
    }


# ---------------------------------------------------------------------------------------------
# beyond accuracy


def item_popularity(train: sp.spmatrix) -> np.ndarray:
    """Share of train users who interacted with each item (0..1)."""
    m = sp.csc_matrix(train)
    n_users = max(m.shape[0], 1)
    return np.diff(m.indptr).astype(np.float64) / n_users


def long_tail_mask(popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """True for items outside the top ``head_share`` of the catalogue by popularity.

    The head is the ceil(head_share * n_items) most popular items (ties by lower item id).
    """
    n = len(popularity)
    n_head = int(math.ceil(head_share * n))
    order = np.lexsort((np.arange(n), -np.asarray(popularity)))
    tail = np.ones(n, dtype=bool)
    tail[order[:n_head]] = False
    return tail


def recommendation_counts(recommended: np.ndarray, n_items: int, k: int) -> np.ndarray:
    rec = np.asarray(recommended)[:, :k].ravel()
    rec = rec[(rec >= 0) & (rec < n_items)]
    return np.bincount(rec.astype(np.int64), minlength=n_items).astype(np.float64)


def gini(counts: Any) -> float:
    """Gini coefficient of non-negative counts (0 equal, -> 1 concentrated)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def lorenz_curve(counts: Any, points: int = 101) -> dict[str, list[float]]:
    """Lorenz curve of recommendation counts: cumulative item share vs cumulative slot share,
    items sorted from least to most recommended, sampled at ``points`` item shares."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    total = x.sum()
    share = np.linspace(0.0, 1.0, points)
    if n == 0 or total <= 0:
        return {"item_share": share.tolist(), "recommendation_share": share.tolist()}
    cum = np.r_[0.0, np.cumsum(x) / total]
    pos = share * n
    return {
        "item_share": [float(v) for v in share],
        "recommendation_share": [float(v) for v in np.interp(pos, np.arange(n + 1), cum)],
    }


def beyond_accuracy_metrics(
    recommended: np.ndarray, popularity: np.ndarray, k: int, top_share: float = 0.01
) -> dict[str, float]:
    """coverage, novelty, gini and top-1% share of the top-k lists (see module docstring)."""
    rec = np.asarray(recommended)[:, :k]
    n_items = len(popularity)
    valid = (rec >= 0) & (rec < n_items)
    slots = rec[valid].astype(np.int64)
    counts = np.bincount(slots, minlength=n_items).astype(np.float64)
    if slots.size == 0:
        return {"coverage": 0.0, "novelty": 0.0, "gini": 0.0, "top1pct_share": 0.0}
    pop = np.asarray(popularity, dtype=np.float64)
    positive = pop[pop > 0]
    floor = positive.min() if positive.size else 1.0
    # Items nobody touched get the smallest observed popularity (1 / n_users on train data).
    p = np.where(pop > 0, pop, floor)[slots]
    n_top = max(int(math.ceil(top_share * n_items)), 1)
    top_items = np.lexsort((np.arange(n_items), -pop))[:n_top]
    return {
        "coverage": float((counts > 0).sum() / n_items),
        "novelty": float(np.mean(-np.log2(p))),
        "gini": gini(counts),
        "top1pct_share": float(counts[top_items].sum() / slots.size),
    }


# ---------------------------------------------------------------------------------------------
# running a model


def recommend_all(
    model: Any,
    train: sp.csr_matrix,
    users: np.ndarray,
    n: int,
    batch_size: int = 4096,
) -> np.ndarray:
    """Top-n item ids (train items filtered) for ``users``, in batches; -1 pads short lists."""
    users = np.asarray(users, dtype=np.int64)
    out = np.full((len(users), n), -1, dtype=np.int64)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        ids, _ = model.recommend(batch, train, n=n, filter_seen=True)
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None, :]
        width = min(n, ids.shape[1])
        out[start : start + len(batch), :width] = ids[:, :width]
    return out


def evaluate_recommendations(
    recommended: np.ndarray,
    users: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = (5, 10, 20),
    *,
    cold_threshold: int = 5,
    head_share: float = 0.2,
) -> dict[str, Any]:
    """All metrics per segment and K for precomputed lists (row i belongs to ``users[i]``).

    Returns ``{segment: {str(k): {metric: value}}}`` for segments ``overall``, ``cold_users``
    and ``long_tail``, with K keys as strings so the structure survives a JSON round trip.
    """
    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test)
    users = np.asarray(users, dtype=np.int64)
    pop = item_popularity(train)
    tail = long_tail_mask(pop, head_share)
    test_u = test[users]
    train_counts = np.diff(train.indptr)[users]
    cold = train_counts <= cold_threshold
    # Long-tail segment: the same lists scored against long-tail test positives only.
    test_tail = test_u.multiply(tail[None, :].astype(np.float32)).tocsr()
    test_tail.eliminate_zeros()

    ks = [int(k) for k in ks]
    recommended = np.asarray(recommended)
    # Hits are found once for the largest K (a prefix of them is the hits at a smaller K);
    # a long-tail hit is a hit on a long-tail item.
    k_max = max(ks, default=0)
    hits_all = _hits(recommended, test_u, k_max) if ks else np.zeros((len(users), 0), bool)
    rec_max = recommended[:, :k_max]
    is_item = (rec_max >= 0) & (rec_max < len(tail))
    tail_hits_all = hits_all & is_item & tail[np.where(is_item, rec_max, 0)]
    n_pos = np.diff(test_u.indptr)
    n_pos_tail = np.diff(test_tail.indptr)

    result: dict[str, Any] = {"overall": {}, "cold_users": {}, "long_tail": {}}
    for k in ks:
        key = str(k)
        per_user = _ranking_from_hits(np.ascontiguousarray(hits_all[:, :k]), n_pos, k)
        evaluated = per_user["evaluated"]
        for segment, mask in (("overall", evaluated), ("cold_users", evaluated & cold)):
            metrics: dict[str, Any] = _mean_ranking(per_user, mask)
            metrics.update(beyond_accuracy_metrics(recommended[mask], pop, k))
            result[segment][key] = metrics
        tail_user = _ranking_from_hits(np.ascontiguousarray(tail_hits_all[:, :k]), n_pos_tail, k)
        tail_metrics: dict[str, Any] = _mean_ranking(tail_user, tail_user["evaluated"])
        rec_k = recommended[evaluated, :k]
        valid = rec_k >= 0
        tail_slots = tail[rec_k[valid]] if valid.any() else np.zeros(0, bool)
        tail_metrics["tail_slot_share"] = float(tail_slots.mean()) if tail_slots.size else 0.0
        tail_metrics["tail_coverage"] = float(
            len(np.unique(rec_k[valid][tail_slots])) / max(int(tail.sum()), 1)
        )
        result["long_tail"][key] = tail_metrics
    return result


def evaluate_model(
    model: Any,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Iterable[int] = (5, 10, 20),
    *,
    batch_size: int = 4096,
    cold_threshold: int = 5,
    head_share: float = 0.2,
    test_ratings: sp.spmatrix | None = None,
    return_recommendations: bool = False,
) -> dict[str, Any]:
    """Recommend for every user with a test positive (train items filtered) and compute every
    metric per K and per segment. ``test_ratings`` (true ratings, same shape) adds RMSE/MAE
    for models with ``predict(user_ids, item_ids)``.

    Returns ``{"ks": [...], "n_users": int, "metrics": {segment: {str(k): {...}}}}`` and
    ``"recommended"``/``"users"`` arrays when ``return_recommendations`` (not JSON-able).
    """
    ks = sorted({int(k) for k in ks})
    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    recommended = recommend_all(model, train, users, max(ks), batch_size)
    out: dict[str, Any] = {
        "ks": ks,
        "n_users": int(len(users)),
        "metrics": evaluate_recommendations(
            recommended, users, train, test, ks, cold_threshold=cold_threshold,
            head_share=head_share,
        ),
    }
    if test_ratings is not None and hasattr(model, "predict"):
        coo = sp.coo_matrix(test_ratings)
        preds = np.asarray(model.predict(coo.row, coo.col), dtype=np.float64)
        out["rating"] = rating_metrics(preds, coo.data)
    if return_recommendations:
        out["recommended"] = recommended
        out["users"] = users
    return out
