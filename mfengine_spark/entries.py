"""The stored entries of a CSR matrix, a bounded block at a time, in row order.

What the Spark path reads the whole matrix for (the Parquet it trains from, the objective of
the factors it returns) takes the entries as (row, column, value) triples; a COO copy of the
whole matrix would cost 16 bytes a non-zero at once. Here only a block's row numbers are
made; its columns and values are views of the matrix's own arrays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp


def entry_blocks(matrix: sp.csr_matrix, size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, columns, values)`` of at most ``size`` stored entries at a time, in the CSR
    matrix's order: int32 row numbers made for the block, and views of ``indices`` and
    ``data``. A block may start and end inside a row."""
    if size < 1:
        raise ValueError("size must be >= 1")
    indptr = matrix.indptr
    for lo in range(0, int(indptr[-1]), size):
        hi = min(lo + size, int(indptr[-1]))
        yield _rows_of(indptr, lo, hi), matrix.indices[lo:hi], matrix.data[lo:hi]


def _rows_of(indptr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The row of each entry lo..hi-1 (int32): the rows whose spans meet [lo, hi), each
    repeated by its share of it."""
    first = int(np.searchsorted(indptr, lo, side="right")) - 1
    end = int(np.searchsorted(indptr, hi, side="left"))  # one past the last row touched
    bounds = np.clip(indptr[first:end + 1], lo, hi)
    return np.repeat(np.arange(first, end, dtype=np.int32), np.diff(bounds))
