"""Top-n selection: one compiled path for every dense score block (strategies and baselines).

Order: higher score first, ties by the lower item id (deterministic). Entries that are -inf
(removed, seen, excluded) or NaN are never candidates; a row with fewer than n candidates is
padded with -1 / -inf; a +inf score keeps its slot but is reported as -1 / -inf.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit


@njit(cache=True, inline="always")
def _worse(value_a, id_a, value_b, id_b):
    """Is (value_a, id_a) ranked after (value_b, id_b)?"""
    return value_a < value_b or (value_a == value_b and id_a > id_b)


@njit(cache=True, inline="always")
def _sift_down(values, ids, size, pos):
    value = values[pos]
    item = ids[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(values[right], ids[right], values[child], ids[child]):
            child = right
        if _worse(values[child], ids[child], value, item):
            values[pos] = values[child]
            ids[pos] = ids[child]
            pos = child
        else:
            break
    values[pos] = value
    ids[pos] = item


@njit(cache=True, inline="always")
def _offer(values, ids, size, k, value, item):
    """Keep the k best of what was offered in a heap whose root is the worst kept; returns
    the new size."""
    if size < k:
        pos = size
        while pos > 0:
            parent = (pos - 1) // 2
            if _worse(value, item, values[parent], ids[parent]):
                values[pos] = values[parent]
                ids[pos] = ids[parent]
                pos = parent
            else:
                break
        values[pos] = value
        ids[pos] = item
        return size + 1
    if _worse(values[0], ids[0], value, item):
        values[0] = value
        ids[0] = item
        _sift_down(values, ids, size, 0)
    return size


@njit(cache=True, inline="always")
def _drain(values, ids, size, out_ids, out_scores, row):
    """Write the heap best first into out_*[row, :size] (non-finite -> -1 / -inf)."""
    for last in range(size - 1, -1, -1):
        value = values[0]
        item = ids[0]
        values[0] = values[last]
        ids[0] = ids[last]
        _sift_down(values, ids, last, 0)
        if np.isfinite(value):
            out_ids[row, last] = item
            out_scores[row, last] = value
        else:
            out_ids[row, last] = -1
            out_scores[row, last] = -np.inf


# Width of the column chunks whose maxima bound the scan in _row_top_n.
_CHUNK = 32


@njit(cache=True, inline="always")
def _row_top_n(row, k, values, ids, chunk_max, out_ids, out_scores, r):
    """Top-k of one score row into out_*[r] (see the order above).

    Cheap bound first: the k-th largest chunk maximum is <= the k-th largest score, so only
    chunks reaching it are scanned, and only their entries reaching it go through the heap.
    ``values``/``ids`` hold >= k entries, ``chunk_max`` >= ceil(len(row) / _CHUNK).
    """
    cols = row.shape[0]
    n_chunks = (cols + _CHUNK - 1) // _CHUNK
    lowest = row.dtype.type(-np.inf)
    for c in range(n_chunks):
        top = lowest
        for j in range(c * _CHUNK, min(cols, (c + 1) * _CHUNK)):
            value = row[j]
            top = value if value > top else top  # skips NaN
        chunk_max[c] = top
    lower = lowest
    if n_chunks >= k:
        size = 0
        for c in range(n_chunks):
            if chunk_max[c] > lower:
                size = _offer(values, ids, size, k, chunk_max[c], c)
                if size == k:
                    lower = values[0]
    # Ascending ids: once the heap is full, an entry gets in iff it beats the worst kept
    # score (an equal score has a higher id, so it ranks after). The bound starts at -inf,
    # which also skips -inf and NaN.
    bound = lowest
    size = 0
    for c in range(n_chunks):
        if chunk_max[c] >= lower and chunk_max[c] > bound:
            for j in range(c * _CHUNK, min(cols, (c + 1) * _CHUNK)):
                value = row[j]
                if value >= lower and value > bound:
                    size = _offer(values, ids, size, k, value, j)
                    if size == k:
                        bound = values[0]
    _drain(values, ids, size, out_ids, out_scores, r)


@njit(cache=True)
def _select_top_n(scores, remove_indptr, remove_indices, n, out_ids, out_scores):
    """Row-wise top-n of a dense block into out_ids / out_scores (prefilled -1 / -inf).

    Row r's entries at ``remove_indices[remove_indptr[r]:remove_indptr[r + 1]]`` are set to
    -inf first (negative or out-of-range positions are ignored); ``scores`` is modified.

    Sequential on purpose: it alternates with the BLAS product that fills the next block, and
    numba's worker threads and BLAS's each busy-wait while the other pool runs, which on a
    small machine made a parallel version slower (and burned twice the CPU).
    """
    rows, cols = scores.shape
    k = min(n, cols)
    if k <= 0:
        return
    values = np.empty(k, dtype=scores.dtype)
    ids = np.empty(k, dtype=np.int64)
    chunk_max = np.empty((cols + _CHUNK - 1) // _CHUNK, dtype=scores.dtype)
    for r in range(rows):
        row = scores[r]
        for jj in range(remove_indptr[r], remove_indptr[r + 1]):
            c = remove_indices[jj]
            if 0 <= c < cols:
                row[c] = -np.inf
        _row_top_n(row, k, values, ids, chunk_max, out_ids, out_scores, r)


def top_n_block(
    scores: np.ndarray, n: int, indptr: np.ndarray | None = None, indices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n of a C-contiguous 2-d block, removing the CSR-style (indptr, indices) entries in
    place first. Returns int64 ids and float32 scores of shape (rows, n)."""
    rows = scores.shape[0]
    ids = np.full((rows, n), -1, dtype=np.int64)
    out = np.full((rows, n), -np.inf, dtype=np.float32)
    if rows == 0 or n == 0 or scores.shape[1] == 0:
        return ids, out
    if indptr is None or indices is None:
        indptr = np.zeros(rows + 1, dtype=np.int64)
        indices = np.zeros(0, dtype=np.int64)
    _select_top_n(
        scores,
        np.asarray(indptr, dtype=np.int64),
        np.asarray(indices, dtype=np.int64),
        int(n),
        ids,
        out,
    )
    return ids, out


def top_n_float32(
    scores: np.ndarray, n: int, remove: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a dense score block in float32, after removing ``remove``'s entries
    (-1/-inf padding for removed or missing)."""
    if remove is None:
        return top_n_block(np.ascontiguousarray(np.atleast_2d(scores), dtype=np.float32), n)
    scores = np.array(np.atleast_2d(scores), dtype=np.float32, order="C")  # a copy: edited
    remove = sp.csr_matrix(remove)
    return top_n_block(scores, n, remove.indptr, remove.indices)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a dense block in float64, best first; -inf entries become -1 / -inf
    padding. Ties are broken by the lower item id, so results are deterministic."""
    scores = np.ascontiguousarray(np.atleast_2d(scores), dtype=np.float64)
    return top_n_block(scores, n)
