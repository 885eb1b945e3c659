"""Compiled top-n kernels of the baselines (popularity's shared ranking, content's fused
TF-IDF scoring); the order is the one of :mod:`mfengine.topn`."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mfengine.topn import _CHUNK, _row_top_n

# Rows handed to one parallel task of the kernels below.
_TASK_ROWS = 32


@njit(parallel=True, cache=True)
def _ranked_top_n(order, order_scores, seen_indptr, seen_indices, n_items, n, out_ids, out_scores):
    """Top-n per row when every row shares one ranking (``order``: candidate ids best first,
    ``order_scores`` their scores): the first n items of the ranking not in the row's seen
    entries (CSR ``seen_indptr``/``seen_indices``). Non-finite scores keep their slot as
    -1 / -inf; out_* are prefilled with -1 / -inf."""
    rows = seen_indptr.shape[0] - 1
    n_tasks = (rows + _TASK_ROWS - 1) // _TASK_ROWS
    for task in prange(n_tasks):
        seen = np.zeros(n_items, dtype=np.bool_)
        for r in range(task * _TASK_ROWS, min((task + 1) * _TASK_ROWS, rows)):
            start, stop = seen_indptr[r], seen_indptr[r + 1]
            for jj in range(start, stop):
                seen[seen_indices[jj]] = True
            got = 0
            for p in range(order.shape[0]):
                if got == n:
                    break
                item = order[p]
                if seen[item]:
                    continue
                value = order_scores[p]
                if np.isfinite(value):
                    out_ids[r, got] = item
                    out_scores[r, got] = value
                got += 1
            for jj in range(start, stop):
                seen[seen_indices[jj]] = False


@njit(parallel=True, cache=True)
def _content_top_n(
    h_indptr, h_indices, h_weights, seen_indptr, seen_indices, v_indptr, v_indices, v_data,
    vt_indptr, vt_indices, vt_data, tiebreak, allowed, n, out_ids, out_scores,
):
    """Fused content scoring and top-n for history rows (CSR h_*, weights already scaled
    to the strength-weighted mean).

    profile = h_weights @ V (V: items x terms CSR v_*), score = profile @ V^T (vt_*: V^T as
    CSR) + tiebreak, with the products summed in the order scipy's sparse matmul uses
    (profile terms in its output order: reverse first touch, exact zeros dropped), so scores
    are bit-identical to ``(user_profiles(h) @ V.T).todense() + tiebreak``. Rows with an
    all-zero profile stay -1 / -inf; items not ``allowed`` and the row's seen entries (CSR
    seen_*) are not candidates. Top-n as for a dense block (:func:`mfengine.base._row_top_n`)."""
    rows = h_indptr.shape[0] - 1
    n_items = v_indptr.shape[0] - 1
    n_terms = vt_indptr.shape[0] - 1
    k = min(n, n_items)
    if k <= 0:
        return
    n_tasks = (rows + _TASK_ROWS - 1) // _TASK_ROWS
    for task in prange(n_tasks):
        profile = np.zeros(n_terms, dtype=np.float64)
        link = np.full(n_terms, -1, dtype=np.int64)
        terms = np.empty(n_terms, dtype=np.int64)
        weights = np.empty(n_terms, dtype=np.float64)
        scores = np.empty(n_items, dtype=np.float64)
        values = np.empty(k, dtype=np.float64)
        ids = np.empty(k, dtype=np.int64)
        chunk_max = np.empty((n_items + _CHUNK - 1) // _CHUNK, dtype=np.float64)
        for r in range(task * _TASK_ROWS, min((task + 1) * _TASK_ROWS, rows)):
            # profile, accumulated like scipy's csr_matmat (a linked list of touched terms)
            head = -2
            length = 0
            for jj in range(h_indptr[r], h_indptr[r + 1]):
                item = h_indices[jj]
                weight = h_weights[jj]
                for kk in range(v_indptr[item], v_indptr[item + 1]):
                    term = v_indices[kk]
                    profile[term] += weight * v_data[kk]
                    if link[term] == -1:
                        link[term] = head
                        head = term
                        length += 1
            m = 0
            for _ in range(length):
                if profile[head] != 0:
                    terms[m] = head
                    weights[m] = profile[head]
                    m += 1
                nxt = link[head]
                link[head] = -1
                profile[head] = 0.0
                head = nxt
            if m == 0:
                continue  # no usable history: empty list, the caller falls back
            scores[:] = 0.0
            for q in range(m):
                term = terms[q]
                weight = weights[q]
                for kk in range(vt_indptr[term], vt_indptr[term + 1]):
                    scores[vt_indices[kk]] += weight * vt_data[kk]
            for j in range(n_items):
                scores[j] = scores[j] + tiebreak[j] if allowed[j] else -np.inf
            for jj in range(seen_indptr[r], seen_indptr[r + 1]):
                scores[seen_indices[jj]] = -np.inf
            _row_top_n(scores, k, values, ids, chunk_max, out_ids, out_scores, r)
