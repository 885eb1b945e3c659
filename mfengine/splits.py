"""Point-in-time splits: per-event arrays (integer user rows, integer item columns, unix
timestamps, optional values) in, a train and a test CSR matrix of the same shape and id space
out. The test matrix holds binary held-out positives that were not already in training."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp


class Split(NamedTuple):
    """Train and test matrices of the same shape; test holds binary held-out positives."""

    train: sp.csr_matrix
    test: sp.csr_matrix


# ---------------------------------------------------------------------------------------------
# splits


def _event_arrays(
    user_ids: Any, item_ids: Any, timestamps: Any, values: Any, shape: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, tuple[int, int]]:
    users = np.asarray(user_ids, dtype=np.int64)
    items = np.asarray(item_ids, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.int64)
    vals = None if values is None else np.asarray(values, dtype=np.float64)
    n = len(users)
    if len(items) != n or len(ts) != n or (vals is not None and len(vals) != n):
        raise ValueError("event arrays must have the same length")
    if n and (users.min() < 0 or items.min() < 0):
        raise ValueError("user and item ids must be non-negative row/column indices")
    if shape is None:
        shape = (int(users.max()) + 1 if n else 0, int(items.max()) + 1 if n else 0)
    elif n and (users.max() >= shape[0] or items.max() >= shape[1]):
        raise ValueError("ids out of range for the given shape")
    return users, items, ts, vals, (int(shape[0]), int(shape[1]))


def _train_matrix(
    users: np.ndarray,
    items: np.ndarray,
    vals: np.ndarray | None,
    shape: tuple[int, int],
    binary: bool,
) -> sp.csr_matrix:
    data = np.ones(len(users)) if (binary or vals is None) else vals
    m = sp.csr_matrix((data, (users, items)), shape=shape)
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    m = m.astype(np.float32)
    m.sort_indices()
    return m


def _sorted_keys(m: sp.csr_matrix) -> np.ndarray:
    """row * n_cols + col for every stored entry, ascending (CSR with sorted indices)."""
    m = m.tocsr()
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices.astype(np.int64)


def _contains(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Vectorised membership of (row, col) pairs in the sparsity pattern of m."""
    keys = _sorted_keys(m)
    query = np.asarray(rows, np.int64) * m.shape[1] + np.asarray(cols, np.int64)
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[pos] == query


def _test_matrix(
    users: np.ndarray, items: np.ndarray, train: sp.csr_matrix, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Binary test positives minus pairs already in train (they are never candidates)."""
    m = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    if train.nnz and m.nnz:
        coo = m.tocoo()
        seen = _contains(train, coo.row, coo.col)
        if seen.any():
            coo.data[seen] = 0.0
            m = coo.tocsr()
            m.eliminate_zeros()
    m = m.astype(np.float32)
    m.sort_indices()
    return m


def temporal_split_mask(user_ids: Any, timestamps: Any, test_fraction: float = 0.2,
                        item_ids: Any = None) -> np.ndarray:
    """Boolean mask of test events for the per-user temporal split.

    Per user, events sorted by (timestamp, item id, original position); the last
    floor(test_fraction * n_u) events are test. Ties are broken deterministically, so an event
    in test is never earlier than any train event of the same user (it can share a timestamp).
    """
    users = np.asarray(user_ids, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.int64)
    n = len(users)
    if n == 0:
        return np.zeros(0, dtype=bool)
    items = np.zeros(n, np.int64) if item_ids is None else np.asarray(item_ids, np.int64)
    order = np.lexsort((np.arange(n), items, ts, users))
    u_sorted = users[order]
    _, first, per_user = np.unique(u_sorted, return_index=True, return_counts=True)
    starts = np.repeat(first, per_user)
    counts = np.repeat(per_user, per_user)
    rank = np.arange(n) - starts
    # The epsilon keeps floor(0.2 * 15) at 3 despite binary floating point.
    n_test = np.floor(test_fraction * counts + 1e-9).astype(np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[order] = rank >= counts - n_test
    return mask


def temporal_split(
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    shape: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    positive_threshold: float | None = None,
    binary: bool = True,
) -> Split:
    """Per-user temporal split (BENCHMARK.md): each user's last floor(20%) events are test.

    user_ids / item_ids are row / column indices. Train holds every train event (binary 1, or
    summed values with ``binary=False``). Test holds the test events whose value is >=
    ``positive_threshold`` (4 on ratings; None keeps all) that are not already in train. Users
    without a test positive have an empty test row and are not evaluated.
    """
    users, items, ts, vals, shape = _event_arrays(user_ids, item_ids, timestamps, values, shape)
    is_test = temporal_split_mask(users, ts, test_fraction, items)
    train = _train_matrix(
        users[~is_test], items[~is_test], None if vals is None else vals[~is_test], shape, binary
    )
    positive = is_test.copy()
    if positive_threshold is not None:
        if vals is None:
            raise ValueError("positive_threshold needs values")
        positive &= vals >= positive_threshold
    test = _test_matrix(users[positive], items[positive], train, shape)
    return Split(train, test)


def masked_split(
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    held_out: Any,
    shape: tuple[int, int] | None = None,
    positive_threshold: float | None = None,
    binary: bool = True,
) -> Split:
    """Train on the events not ``held_out`` (a boolean mask, one per event), test on the
    held-out positives not in train: the other splits' matrices for any carve-out."""
    users, items, ts, vals, shape = _event_arrays(user_ids, item_ids, timestamps, values, shape)
    held_out = np.asarray(held_out, dtype=bool)
    if held_out.shape != users.shape:
        raise ValueError("held_out must have one entry per event")
    train = _train_matrix(users[~held_out], items[~held_out],
                          None if vals is None else vals[~held_out], shape, binary)
    positive = held_out.copy()
    if positive_threshold is not None:
        if vals is None:
            raise ValueError("positive_threshold needs values")
        positive &= vals >= positive_threshold
    return Split(train, _test_matrix(users[positive], items[positive], train, shape))


def earlier_band_mask(user_ids: Any, timestamps: Any, held_out: Any, fraction: float = 0.2,
                      item_ids: Any = None, kind: str = "temporal") -> np.ndarray:
    """The events just before a carve-out's ``held_out`` ones: for ``"temporal"``, each
    user's last ``fraction`` of the events not held out; for ``"global"``, the events from the
    (1 - fraction) quantile of the remaining timestamps on. Disjoint from ``held_out``."""
    held_out = np.asarray(held_out, dtype=bool)
    rest = ~held_out
    band = np.zeros(held_out.shape, dtype=bool)
    ts = np.asarray(timestamps, dtype=np.int64)
    if kind == "temporal":
        items = None if item_ids is None else np.asarray(item_ids)[rest]
        band[rest] = temporal_split_mask(np.asarray(user_ids)[rest], ts[rest], fraction, items)
    elif kind == "global":
        if rest.any():
            band[rest] = ts[rest] >= int(np.quantile(ts[rest], 1.0 - fraction))
    else:
        raise ValueError("kind must be 'temporal' or 'global'")
    return band


def global_time_split(
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    cutoff: int,
    test_end: int | None = None,
    shape: tuple[int, int] | None = None,
    positive_threshold: float | None = None,
    binary: bool = True,
) -> Split:
    """Global cutoff split (the production default): train is every event before ``cutoff``,
    test every positive event at or after it (and before ``test_end`` if given).

    Only users with at least one train event keep a test row, since a model has no vector for
    the others.
    """
    users, items, ts, vals, shape = _event_arrays(user_ids, item_ids, timestamps, values, shape)
    before = ts < cutoff
    train = _train_matrix(
        users[before], items[before], None if vals is None else vals[before], shape, binary
    )
    positive = ~before
    if test_end is not None:
        positive &= ts < test_end
    if positive_threshold is not None:
        if vals is None:
            raise ValueError("positive_threshold needs values")
        positive &= vals >= positive_threshold
    has_train = np.diff(train.indptr) > 0
    positive &= has_train[users]
    test = _test_matrix(users[positive], items[positive], train, shape)
    return Split(train, test)


def split_summary(split: Split) -> dict[str, Any]:
    """Plain numbers describing a split (for reports)."""
    train, test = split
    test_users = np.diff(test.indptr) > 0
    return {
        "n_users": int(train.shape[0]),
        "n_items": int(train.shape[1]),
        "train_interactions": int(train.nnz),
        "test_positives": int(test.nnz),
        "train_users": int((np.diff(train.indptr) > 0).sum()),
        "test_users": int(test_users.sum()),
    }
