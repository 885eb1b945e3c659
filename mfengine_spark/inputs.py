"""The DataFrame a Spark fit trains from: the Parquet the caller already put where the
executors read it (``SparkALS.input_uri``), else a copy written for this fit.

On a cluster the executors run on other machines: a file this process writes to its own temp
folder does not exist for them. So without a URI the copy is written only where they can read
it: under ``SPARK_SCRATCH_DIR`` (the operator says it is shared), or in this process's temp
folder when the master is local (the executors are threads of this process's JVM). Anything
else is refused rather than collected through the driver: the point of a cluster is that one
machine does not hold the whole matrix.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine_spark.parquet import SCHEMA, write_interactions

COLUMNS = tuple(SCHEMA.names)  # user, item, value


@contextmanager
def training_frame(session: Any, matrix: sp.csr_matrix, input_uri: str | None
                   ) -> Iterator[Any]:
    """The (user, item, value) DataFrame of ``matrix`` for this fit (a scratch copy lives
    until the block ends)."""
    if input_uri:
        frame = session.read.parquet(input_uri)
        check_frame(frame, matrix, input_uri)
        yield frame
        return
    folder = scratch_parent(session.sparkContext.master)
    with tempfile.TemporaryDirectory(prefix="mfengine-spark-", dir=folder) as scratch:
        yield session.read.parquet(str(write_interactions(matrix, scratch)))


def scratch_parent(master: str) -> str | None:
    """Where a fit without an input URI may write its copy (None: the system temp folder);
    a ValueError when the executors could not read it."""
    folder = os.environ.get("SPARK_SCRATCH_DIR") or None
    if folder is None and not master.startswith("local"):
        raise ValueError(
            f"SparkALS on {master} needs input_uri (Parquet the executors can read: s3a://, "
            "hdfs://, or file:// on storage every machine mounts) or SPARK_SCRATCH_DIR set to "
            "a folder shared by this process and every executor: its own temp folder exists "
            "only on this machine")
    return folder


def check_frame(frame: Any, matrix: sp.csr_matrix, uri: str) -> None:
    """A ValueError unless the Parquet at ``uri`` holds ``matrix``'s entries: the same count,
    positions inside its shape, the same sum of values. One pass over the file; it catches a
    URI that names another dataset version, a split, or a truncated or duplicated copy."""
    from pyspark.sql import functions as F

    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{uri} has no column {', '.join(missing)} (it has "
                         f"{', '.join(frame.columns)}): not interactions Parquet")
    row = frame.agg(F.count(F.lit(1)), F.min("user"), F.max("user"), F.min("item"),
                    F.max("item"), F.sum("value")).first()
    count, user_lo, user_hi, item_lo, item_hi, total = row
    n_users, n_items = matrix.shape
    expected = float(np.sum(matrix.data, dtype=np.float64))
    problems = []
    if count != matrix.nnz:
        problems.append(f"{count} rows for {matrix.nnz} non-zeros")
    inside = not count or (user_lo >= 0 and item_lo >= 0 and user_hi < n_users
                           and item_hi < n_items)  # an empty file has no positions (None)
    if not inside:
        problems.append(f"users {user_lo}..{user_hi} and items {item_lo}..{item_hi} outside "
                        f"the {n_users} x {n_items} matrix")
    if not math.isclose(float(total or 0.0), expected, rel_tol=1e-6, abs_tol=1e-6):
        problems.append(f"values summing to {total} for {expected}")
    if problems:
        raise ValueError(f"{uri} is not the matrix this fit was given: {'; '.join(problems)}")
