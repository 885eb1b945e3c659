"""Compiled training kernels (numba, nopython, float32, cached to disk).

This is the one code path for training: there is no pure-numpy twin. ALS kernels run in
parallel over users (``prange``; each row's solve is independent, so results do not depend on
the thread count). The SGD and BPR epochs are sequential so that a seed gives bit-identical
factors; they are cheap enough per sample that this still beats the peers (see
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Rows handed to one parallel task: amortises scratch allocation over many users.
_BLOCK = 128


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _dot(a, b):
    total = np.float32(0.0)
    for f in range(a.shape[0]):
        total += a[f] * b[f]
    return total


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _matvec(matrix, vector, out):
    k = vector.shape[0]
    for a in range(k):
        total = np.float32(0.0)
        for b in range(k):
            total += matrix[a, b] * vector[b]
        out[a] = total


@njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def als_cg_half(indptr, indices, data, X, Y, YtY, alpha, cg_steps, penalty):
    """One ALS half-iteration by conjugate gradient, updating X in place (warm start).

    Solves (YtY + penalty_u I + sum_i (c_i - 1) y_i y_i^T) x = sum_i c_i y_i per row, with
    c = 1 + alpha * strength, YtY = Y^T Y and penalty_u the row's regularization (a per-row
    array, so that weighted-lambda ALS scales it by the row's count). The k x k system is
    never formed: A @ p costs k^2 + nnz_row * k.
    """
    n_rows, k = X.shape
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    for block in prange(n_blocks):
        r = np.empty(k, dtype=np.float32)
        p = np.empty(k, dtype=np.float32)
        ap = np.empty(k, dtype=np.float32)
        for u in range(block * _BLOCK, min((block + 1) * _BLOCK, n_rows)):
            start, end = indptr[u], indptr[u + 1]
            x = X[u]
            if start == end:
                x[:] = 0.0
                continue
            ridge = penalty[u]
            # residual r = b - A x
            _matvec(YtY, x, r)
            for f in range(k):
                r[f] = -r[f] - ridge * x[f]
            for idx in range(start, end):
                y = Y[indices[idx]]
                confidence = np.float32(1.0) + alpha * data[idx]
                coefficient = confidence - (confidence - np.float32(1.0)) * _dot(y, x)
                for f in range(k):
                    r[f] += coefficient * y[f]
            for f in range(k):
                p[f] = r[f]
            rs_old = _dot(r, r)
            if rs_old < 1e-20:
                continue
            for _ in range(cg_steps):
                _matvec(YtY, p, ap)
                for f in range(k):
                    ap[f] += ridge * p[f]
                for idx in range(start, end):
                    y = Y[indices[idx]]
                    weight = alpha * data[idx] * _dot(y, p)
                    for f in range(k):
                        ap[f] += weight * y[f]
                step = rs_old / _dot(p, ap)
                for f in range(k):
                    x[f] += step * p[f]
                    r[f] -= step * ap[f]
                rs_new = _dot(r, r)
                if rs_new < 1e-20:
                    break
                ratio = rs_new / rs_old
                for f in range(k):
                    p[f] = r[f] + ratio * p[f]
                rs_old = rs_new


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _cholesky_solve(A, b, out):
    """Solve A out = b for symmetric positive definite A (A is overwritten by L)."""
    k = b.shape[0]
    for j in range(k):
        total = A[j, j]
        for m in range(j):
            total -= A[j, m] * A[j, m]
        diagonal = np.sqrt(max(total, 1e-12))
        A[j, j] = diagonal
        for i in range(j + 1, k):
            total = A[i, j]
            for m in range(j):
                total -= A[i, m] * A[j, m]
            A[i, j] = total / diagonal
    for i in range(k):  # forward: L z = b
        total = b[i]
        for m in range(i):
            total -= A[i, m] * out[m]
        out[i] = total / A[i, i]
    for i in range(k - 1, -1, -1):  # backward: L^T out = z
        total = out[i]
        for m in range(i + 1, k):
            total -= A[m, i] * out[m]
        out[i] = total / A[i, i]


@njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def als_cholesky_half(indptr, indices, data, X, Y, YtY, alpha, penalty):
    """One exact ALS half-iteration: forms and factorises the k x k system per row (float64),
    YtY = Y^T Y plus the row's ``penalty`` on the diagonal."""
    n_rows, k = X.shape
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    for block in prange(n_blocks):
        A = np.empty((k, k), dtype=np.float64)
        b = np.empty(k, dtype=np.float64)
        solution = np.empty(k, dtype=np.float64)
        for u in range(block * _BLOCK, min((block + 1) * _BLOCK, n_rows)):
            start, end = indptr[u], indptr[u + 1]
            if start == end:
                X[u, :] = 0.0
                continue
            for a in range(k):
                b[a] = 0.0
                for c in range(k):
                    A[a, c] = YtY[a, c]
                A[a, a] += penalty[u]
            for idx in range(start, end):
                y = Y[indices[idx]]
                extra = alpha * data[idx]
                for a in range(k):
                    b[a] += (1.0 + extra) * y[a]
                    scaled = extra * y[a]
                    for c in range(a + 1):
                        A[a, c] += scaled * y[c]
            for a in range(k):  # mirror the lower triangle
                for c in range(a + 1, k):
                    A[a, c] = A[c, a]
            _cholesky_solve(A, b, solution)
            for a in range(k):
                X[u, a] = solution[a]


@njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def als_observed_loss(indptr, indices, data, X, Y, alpha):
    """Sum over observed entries of c (1 - s)^2 - s^2 (s = x.y), float64.

    Together with sum((X^T X) * (Y^T Y)) (all entries, weight 1, target 0) and the
    regularization terms this is the full implicit-ALS objective.
    """
    n_rows = X.shape[0]
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    totals = np.zeros(n_blocks, dtype=np.float64)
    for block in prange(n_blocks):
        total = 0.0
        for u in range(block * _BLOCK, min((block + 1) * _BLOCK, n_rows)):
            x = X[u]
            for idx in range(indptr[u], indptr[u + 1]):
                s = np.float64(_dot(x, Y[indices[idx]]))
                confidence = 1.0 + alpha * data[idx]
                total += confidence * (1.0 - s) * (1.0 - s) - s * s
        totals[block] = total
    return totals.sum()


@njit(cache=True, fastmath=True, error_model="numpy")
def sgd_epoch(users, items, ratings, order, mean, user_bias, item_bias, P, Q, lr, reg):
    """One epoch of biased-MF SGD over the ratings in ``order``; returns the sum of e^2."""
    k = P.shape[1]
    total = 0.0
    for t in range(order.shape[0]):
        idx = order[t]
        u = users[idx]
        i = items[idx]
        error = ratings[idx] - (mean + user_bias[u] + item_bias[i] + _dot(P[u], Q[i]))
        total += error * error
        user_bias[u] += lr * (error - reg * user_bias[u])
        item_bias[i] += lr * (error - reg * item_bias[i])
        for f in range(k):
            pu = P[u, f]
            qi = Q[i, f]
            P[u, f] += lr * (error * qi - reg * pu)
            Q[i, f] += lr * (error * pu - reg * qi)
    return total


@njit(cache=True, inline="always")
def _contains(indices, start, end, item):
    """Binary search for ``item`` in the sorted slice indices[start:end]."""
    lo, hi = start, end
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and indices[lo] == item


@njit(cache=True, fastmath=True, error_model="numpy")
def bpr_epoch(
    indptr, indices, row_of, X, Y, bias, lr, reg, seed, popularity_cdf, use_popularity
):
    """One BPR epoch of nnz SGD steps; returns (mean -log sigmoid, skipped samples).

    A sample is a random observed (user, positive) pair and a negative drawn uniformly (or
    from ``popularity_cdf``), re-drawn while it is one of the user's positives (up to 10
    tries, then the sample is skipped: such users have nearly every item).
    """
    np.random.seed(seed)
    nnz = indices.shape[0]
    n_items, k = Y.shape
    loss = 0.0
    counted = 0
    skipped = 0
    for sample in range(nnz):
        idx = np.random.randint(0, nnz)
        u = row_of[idx]
        i = indices[idx]
        start, end = indptr[u], indptr[u + 1]
        j = -1
        for _try in range(10):
            if use_popularity:
                candidate = np.searchsorted(popularity_cdf, np.random.random(), side="right")
                candidate = min(candidate, n_items - 1)
            else:
                candidate = np.random.randint(0, n_items)
            if not _contains(indices, start, end, candidate):
                j = candidate
                break
        if j < 0:
            skipped += 1
            continue
        x = X[u]
        yi = Y[i]
        yj = Y[j]
        z = bias[i] - bias[j]
        for f in range(k):
            z += x[f] * (yi[f] - yj[f])
        # d/dz log sigmoid(z) = sigmoid(-z); one exp, overflow-free for either sign of z
        e = np.exp(-abs(z))
        g = np.float32(e / (1.0 + e)) if z >= 0 else np.float32(1.0 / (1.0 + e))
        if (sample & 7) == 0:
            # the loss is a progress signal: every 8th sample estimates it at 1/8 of the cost
            loss += np.log1p(e) - min(z, 0.0)
            counted += 1
        bias[i] += lr * (g - reg * bias[i])
        bias[j] += lr * (-g - reg * bias[j])
        for f in range(k):
            xf = x[f]
            yif = yi[f]
            yjf = yj[f]
            x[f] += lr * (g * (yif - yjf) - reg * xf)
            yi[f] += lr * (g * xf - reg * yif)
            yj[f] += lr * (-g * xf - reg * yjf)
    return loss / max(counted, 1), skipped
