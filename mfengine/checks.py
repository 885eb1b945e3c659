"""Quality checks on trained factors, run before a model version may become a candidate.

Each check is a plain dict ``{"name", "passed", "reason", "values"}`` (JSON-able). The checks:

- ``dimensions``: factor matrices match the data (users x k, items x k, same k);
- ``finite``: no NaN or Inf anywhere;
- ``user_norms`` / ``item_norms``: norm percentiles (p1, p50, p90, p99, max); fails when the
  largest norm exceeds ``max_norm_ratio`` (50) x the 99th percentile (a handful of huge
  item vectors dominate every inner product, so every user gets the same items) or when the
  median is zero (collapsed factors); vectors beyond the ratio are listed either way. The
  99th percentile, not the median, is the reference: with power-law popularity and strong
  regularization most rare items legitimately sit near zero and the popular head has long
  vectors, so a median reference flags an ordinary catalogue. With the data given, a vector
  beyond the ratio is an outlier only if its norm is further out than its data: its norm over
  the p99 norm exceeds its number of interactions over the p99 number. The popular head of a
  large power-law catalogue is both (at 100k items and 10M events the top item had 155x the
  p99's users and 60x its norm) and passes; a vector inflated by a handful of events at
  absurd weights, or by nothing, fails;
- ``item_coverage``: share of items with a non-degenerate vector, and share of items reaching
  any sampled user's top-k (fails below ``min_item_coverage``);
- ``user_coverage``: share of users with a non-degenerate vector among users with data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def _check(name: str, passed: bool, reason: str, **values: Any) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "reason": reason, "values": values}


# Sampled users scored per block in item_coverage: the scores of all of them at once are
# sample x items (2,000 x 100k float32 = 800 MB, with the top-k selection's copies 3 GB).
_SCORE_BLOCK = 256


def row_norms(factors: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row, float64, without a float64 copy of the whole matrix."""
    factors = np.asarray(factors)
    out = np.empty(factors.shape[0], dtype=np.float64)
    for start in range(0, factors.shape[0], 65536):
        block = factors[start:start + 65536].astype(np.float64)
        out[start:start + 65536] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def norm_percentiles(factors: np.ndarray, norms: np.ndarray | None = None) -> dict[str, float]:
    norms = row_norms(factors) if norms is None else norms
    norms = norms[np.isfinite(norms)]
    if norms.size == 0:
        return {"p1": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p1, p50, p90, p99 = np.percentile(norms, [1, 50, 90, 99])
    return {"p1": float(p1), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(norms.max())}


def _norm_check(name: str, norms: np.ndarray, max_ratio: float,
                support: np.ndarray | None = None) -> dict[str, Any]:
    """`support`: each vector's number of interactions, when the data is known."""
    stats = norm_percentiles(None, norms)
    if stats["p50"] <= 0:
        return _check(name, False, "median norm is 0: factors collapsed", **stats)
    reference = stats["p99"]
    ratio = stats["max"] / reference
    beyond = norms > max_ratio * reference
    backed = np.zeros_like(beyond)
    if support is not None and support.size:
        support_ratio = support / max(float(np.percentile(support, 99)), 1.0)
        backed = beyond & (norms / reference <= support_ratio)
    outliers = np.flatnonzero(beyond & ~backed)
    stats.update(
        {"max_over_p99": float(ratio), "max_ratio_allowed": float(max_ratio),
         "n_outliers": int(outliers.size), "n_backed_by_data": int(backed.sum()),
         "outlier_ids": [int(i) for i in outliers[np.argsort(-norms[outliers])][:10]]}
    )
    if outliers.size:
        return _check(
            name, False,
            f"{outliers.size} vectors exceed {max_ratio:g}x the 99th-percentile norm "
            f"(max {stats['max']:.3g} vs p99 {reference:.3g})"
            + (" further than their data" if support is not None else ""),
            **stats,
        )
    reason = f"max norm is {ratio:.2f}x the 99th percentile"
    if backed.any():
        reason += (f"; the {int(backed.sum())} beyond {max_ratio:g}x have as much more data "
                   f"(the popular head)")
    return _check(name, True, reason, **stats)


def check_factors(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    user_items: sp.spmatrix | None = None,
    *,
    max_norm_ratio: float = 50.0,
    min_item_coverage: float = 0.01,
    min_user_coverage: float = 0.99,
    k: int = 10,
    sample_users: int = 2000,
    degenerate_norm: float = 1e-6,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run every check on raw factor matrices (see the module docstring)."""
    uf = np.asarray(user_factors)
    itf = np.asarray(item_factors)
    out: list[dict[str, Any]] = []

    dims_ok = uf.ndim == 2 and itf.ndim == 2 and uf.shape[1] == itf.shape[1]
    reason = "factor shapes match the data"
    if user_items is not None:
        dims_ok &= (uf.shape[0], itf.shape[0]) == tuple(user_items.shape)
        if not dims_ok:
            reason = f"factors {uf.shape} / {itf.shape} do not fit data {user_items.shape}"
    elif not dims_ok:
        reason = f"user factors {uf.shape} and item factors {itf.shape} disagree"
    out.append(_check("dimensions", dims_ok, reason, user_shape=list(uf.shape),
                      item_shape=list(itf.shape),
                      data_shape=None if user_items is None else list(user_items.shape)))
    if not dims_ok:
        return out

    n_bad_u = int((~np.isfinite(uf)).any(axis=1).sum())
    n_bad_i = int((~np.isfinite(itf)).any(axis=1).sum())
    finite = n_bad_u == 0 and n_bad_i == 0
    out.append(_check(
        "finite", finite,
        "all factors finite" if finite else
        f"NaN/Inf in {n_bad_u} user and {n_bad_i} item vectors",
        non_finite_users=n_bad_u, non_finite_items=n_bad_i,
    ))
    user_norms, item_norms = row_norms(uf), row_norms(itf)
    user_support = item_support = None
    if user_items is not None:
        user_items = sp.csr_matrix(user_items)
        user_support = np.diff(user_items.indptr)
        item_support = np.bincount(user_items.indices, minlength=itf.shape[0])
    out.append(_norm_check("user_norms", user_norms, max_norm_ratio, user_support))
    out.append(_norm_check("item_norms", item_norms, max_norm_ratio, item_support))

    # A row with NaN or Inf has a non-finite norm: neither healthy nor degenerate-small.
    healthy_items = np.isfinite(item_norms) & (item_norms > degenerate_norm)
    rng = np.random.default_rng(seed)
    if user_items is not None:
        active_users = np.flatnonzero(user_support > 0)
    else:
        active_users = np.arange(uf.shape[0])
    sample = active_users
    if sample.size > sample_users:
        sample = np.sort(rng.choice(sample, sample_users, replace=False))
    reached = 0.0
    if sample.size and itf.shape[0]:
        take = min(k, itf.shape[0])
        items_t = itf.T.astype(np.float32)
        in_top = np.zeros(itf.shape[0], dtype=bool)
        for start in range(0, sample.size, _SCORE_BLOCK):
            scores = uf[sample[start:start + _SCORE_BLOCK]].astype(np.float32) @ items_t
            np.nan_to_num(scores, copy=False, nan=-np.inf)
            np.negative(scores, out=scores)
            in_top[np.argpartition(scores, take - 1, axis=1)[:, :take]] = True
        reached = float(in_top.sum() / itf.shape[0])
    share_healthy = float(healthy_items.mean()) if itf.shape[0] else 0.0
    # Large catalogues with sparse data concentrate legitimately; a collapsed model gives
    # everyone nearly the same list, so it also fails the distinct-item floor of 5 x k.
    distinct = int(round(reached * itf.shape[0]))
    out.append(_check(
        "item_coverage", reached >= min_item_coverage or distinct >= 5 * k,
        f"{reached:.1%} of items reach a sampled user's top-{k} "
        f"({distinct} items; minimum {min_item_coverage:.1%} or {5 * k} items); "
        f"{share_healthy:.1%} have a non-degenerate vector",
        share_in_top_k=reached, distinct_in_top_k=distinct,
        share_non_degenerate=share_healthy, k=int(k),
        sampled_users=int(sample.size), minimum=float(min_item_coverage),
    ))

    healthy_users = np.isfinite(user_norms) & (user_norms > degenerate_norm)
    share_users = float(healthy_users[active_users].mean()) if active_users.size else 0.0
    out.append(_check(
        "user_coverage", share_users >= min_user_coverage,
        f"{share_users:.1%} of users with data have a non-degenerate vector "
        f"(minimum {min_user_coverage:.1%})",
        share_non_degenerate=share_users, users_with_data=int(active_users.size),
        minimum=float(min_user_coverage),
    ))
    return out


def check_model(model: Any, user_items: sp.spmatrix | None = None, **kwargs: Any) -> list[dict]:
    """`check_factors` on a fitted strategy's ``user_factors_`` / ``item_factors_``."""
    return check_factors(model.user_factors_, model.item_factors_, user_items, **kwargs)


def all_passed(checks: list[dict[str, Any]]) -> bool:
    return all(c["passed"] for c in checks)
