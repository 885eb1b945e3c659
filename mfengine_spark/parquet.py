"""The interaction matrix as Parquet rows ``(user, item, value)``: the form Spark reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

FILE_NAME = "interactions.parquet"
# Rows per row group: Spark splits reading by row group, so a large matrix is read in parallel.
ROW_GROUP_ROWS = 1 << 20


def write_interactions(matrix: sp.spmatrix, folder: str | os.PathLike[str]) -> Path:
    """Write the nonzero entries of a users x items matrix to ``folder/interactions.parquet``
    (int32 user and item positions, float32 value, in row order) and return the file's path.
    The positions are the matrix's row and column numbers, so factors keyed by them come back
    in the matrix's order."""
    coo = sp.coo_matrix(matrix)
    table = pa.table({
        "user": pa.array(coo.row.astype(np.int32, copy=False)),
        "item": pa.array(coo.col.astype(np.int32, copy=False)),
        "value": pa.array(coo.data.astype(np.float32, copy=False)),
    })
    path = Path(folder) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
    return path
