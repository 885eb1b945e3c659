"""The interaction matrix as Parquet rows ``(user, item, value)``: the form Spark reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from mfengine_spark.entries import entry_blocks

FILE_NAME = "interactions.parquet"
# Rows per row group: Spark splits reading by row group, so a large matrix is read in parallel.
# The file is written one row group at a time, so this also bounds what writing it holds
# (about 12 bytes a row: 12 MB).
ROW_GROUP_ROWS = 1 << 20
SCHEMA = pa.schema([("user", pa.int32()), ("item", pa.int32()), ("value", pa.float32())])


def write_interactions(matrix: sp.spmatrix, folder: str | os.PathLike[str]) -> Path:
    """Write the nonzero entries of a users x items matrix to ``folder/interactions.parquet``
    (int32 user and item positions, float32 value, in row order) and return the file's path.
    The positions are the matrix's row and column numbers, so factors keyed by them come back
    in the matrix's order."""
    csr = sp.csr_matrix(matrix)  # no copy for a CSR matrix (the strategy's is canonical)
    path = Path(folder) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for rows, columns, values in entry_blocks(csr, ROW_GROUP_ROWS):
            writer.write_batch(pa.record_batch([
                pa.array(rows), pa.array(columns.astype(np.int32, copy=False)),
                pa.array(values.astype(np.float32, copy=False))], schema=SCHEMA),
                row_group_size=ROW_GROUP_ROWS)
    return path
