"""``spark_als``: implicit-feedback ALS trained by Spark MLlib, served like any mfengine model.

Spark does the alternating least squares on its executors; the factors come back to this
process as float32 numpy arrays in the matrix's row and column order, so everything after
``fit`` (vectors, evaluation, artifacts, fold-in, serving) is mfengine's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.als import gram64, regularization_rule, weighted_lambda, weighted_norms
from mfengine.base import MatrixFactorization, RandomState, check_user_items
from mfengine_spark.entries import entry_blocks
from mfengine_spark.inputs import training_frame
from mfengine_spark.session import spark_session

# The objective is summed in float64 a block at a time, never over float64 copies of whole
# arrays (10M users x 64 factors would be 5 GB): this many observed entries or factor rows per
# block, 16 MB per float64 array at 64 factors.
_LOSS_BLOCK = 32768


class SparkALS(MatrixFactorization):
    """``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` behind mfengine's interface.

    ``factors`` -> rank, ``alpha`` -> alpha (the same confidence c = 1 + alpha * strength as
    mfengine's ALS), ``iterations`` -> maxIter, ``random_state`` -> seed; ``blocks`` ->
    numUserBlocks and numItemBlocks (0: the cluster's default parallelism).

    The objective is mfengine ALS's with weighted-lambda scaling: Spark's penalty is regParam x
    each user's and item's number of observed entries (ALS-WR). ``regularization`` and
    ``regularization_scaling`` mean what they mean for mfengine's ALS, so that one plan trains
    models of the same strength on either engine: the regParam a fit uses is
    :func:`mfengine.als.weighted_lambda` of the rule on the data: "auto" gives the measured
    count default (0.3), a number with ``regularization_scaling="count"`` is regParam as it is,
    a fixed lambda or a singular-value share is converted relative to its own default. A
    number without a scaling is regParam (Spark's own meaning). The regParam a fit used is
    ``regularization_``.
    ``fold_in`` solves the same objective for one user, the item factors fixed.

    Spark runs every iteration in one job and reports no loss on the way: the loss history
    holds NaN for each iteration but the last, which is the objective of the final factors
    divided by the number of observed entries. The callback is called for every iteration
    after Spark is done.
    """

    name = "spark_als"
    _state_arrays = ("user_factors_", "item_factors_", "regularization_")
    #: Where the matrix given to ``fit`` already is as interactions Parquet
    #: (:func:`mfengine_spark.parquet.write_interactions`'s form) at a URI Spark reads
    #: (file://, s3a://, hdfs://): set before ``fit``, which then reads it, checked against
    #: the matrix (:func:`mfengine_spark.inputs.check_frame`), and writes no copy. None: the
    #: fit writes a scratch copy (:mod:`mfengine_spark.inputs`). Not a hyperparameter: it
    #: names the data, so it is neither in ``get_params`` nor saved with the model.
    input_uri: str | None = None

    def __init__(
        self,
        factors: int = 64,
        regularization: float | str = "auto",
        alpha: float = 1.0,
        iterations: int = 15,
        blocks: int = 0,
        random_state: RandomState = None,
        regularization_scaling: str | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.regularization_scaling = regularization_scaling
        self.alpha = alpha
        self.iterations = iterations
        self.blocks = blocks
        self.random_state = random_state

    def regularization_rule(self) -> tuple[str, float]:
        """(scaling, value) as given; a number without a scaling is regParam ("count")."""
        return regularization_rule(self.regularization, self.regularization_scaling,
                                   number_scaling="count")

    def _penalty(self) -> float:
        """regParam of the fitted model (models saved before it was stored: the number)."""
        fitted = self.__dict__.get("regularization_")
        return float(fitted) if fitted is not None else float(self.regularization)

    def _prepare(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        if self.factors < 1 or self.iterations < 1 or self.blocks < 0:
            raise ValueError("factors and iterations must be >= 1 and blocks >= 0")
        if self.alpha < 0:
            raise ValueError("alpha must be >= 0")
        self.regularization_rule()  # names a bad regularization or scaling
        matrix = check_user_items(user_items, allow_negative=False)
        if matrix.nnz == 0:
            raise ValueError("user_items has no interactions to train on")
        return matrix

    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        """The whole Spark fit: the iterations below only report it."""
        self.__dict__.pop("_fold_in_gram_cache", None)
        seed = int(rng.integers(0, 2**31 - 1))
        session = spark_session()
        from pyspark.ml.recommendation import ALS as SparkMLlibALS

        blocks = self.blocks or session.sparkContext.defaultParallelism
        self.regularization_ = np.float32(weighted_lambda(
            self.regularization_rule(), user_items, float(self.alpha)))
        estimator = SparkMLlibALS(
            rank=self.factors, maxIter=self.iterations, regParam=float(self.regularization_),
            alpha=float(self.alpha), implicitPrefs=True, seed=seed, numUserBlocks=blocks,
            numItemBlocks=blocks, userCol="user", itemCol="item", ratingCol="value",
            nonnegative=False)
        with training_frame(session, user_items, self.input_uri) as frame:
            fitted = estimator.fit(frame)
            n_users, n_items = user_items.shape
            self.user_factors_ = _dense_factors(fitted.userFactors, n_users, self.factors)
            self.item_factors_ = _dense_factors(fitted.itemFactors, n_items, self.factors)

    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        if iteration + 1 < self.iterations:
            return float("nan")
        return self._loss(user_items)

    def _loss(self, user_items: sp.csr_matrix) -> float:
        """Spark's implicit objective of the factors, per observed entry."""
        return implicit_objective(user_items, self.user_factors_, self.item_factors_,
                                  self.alpha, self._penalty()) / user_items.nnz

    def _fold_in_gram(self) -> np.ndarray:
        """Y^T Y (float64), kept until a fit replaces the item factors (per-request fold-in
        must not cost a pass over every item)."""
        Y = self.item_factors_
        key = (id(Y), Y.shape)
        cached = self.__dict__.get("_fold_in_gram_cache")
        if cached is None or cached[0] != key:
            cached = (key, gram64(Y, _LOSS_BLOCK))
            self._fold_in_gram_cache = cached
        return cached[1]

    def fold_in(self, item_ids: Any, strengths: Any = None) -> np.ndarray:
        """The user vector Spark's last half-iteration would compute for this history:
        (Y^T Y + Y^T (C - I) Y + regularization * n I) x = Y^T C p, n = positive entries."""
        ids, values = self._fold_in_inputs(item_ids, strengths)
        gram = self._fold_in_gram()
        if ids.size == 0:
            return np.zeros(gram.shape[0], dtype=np.float32)
        selected = self.item_factors_[ids].astype(np.float64)
        extra = self.alpha * np.abs(values.astype(np.float64))
        positive = values > 0
        A = gram + (selected.T * extra) @ selected
        A[np.diag_indices_from(A)] += self._penalty() * int(positive.sum())
        b = selected.T @ np.where(positive, 1.0 + extra, 0.0)
        try:
            return np.linalg.solve(A, b).astype(np.float32)
        except np.linalg.LinAlgError:  # all-zero item factors: no unique solution
            return np.linalg.lstsq(A, b, rcond=None)[0].astype(np.float32)


def implicit_objective(user_items: sp.csr_matrix, X: np.ndarray, Y: np.ndarray,
                       alpha: float, penalty: float) -> float:
    """Spark's implicit ALS-WR objective of user factors X and item factors Y on the matrix:
    sum over all (u, i) of c (p - x.y)^2 (p = 1 and c = 1 + alpha * strength on observed
    entries, 0 and 1 elsewhere) + penalty * sum of each row's entry count x |row|^2. In
    float64, _LOSS_BLOCK entries or rows at a time."""
    observed = 0.0
    for rows, cols, values in entry_blocks(user_items, _LOSS_BLOCK):
        predicted = np.einsum("ij,ij->i", X[rows].astype(np.float64),
                              Y[cols].astype(np.float64))
        confidence = 1.0 + alpha * values
        # c (1 - s)^2 on observed entries replaces the s^2 the all-pairs term counts
        observed += float(np.sum(confidence * (1.0 - predicted) ** 2 - predicted**2))
    everything = float(np.sum(gram64(X, _LOSS_BLOCK) * gram64(Y, _LOSS_BLOCK)))
    user_counts = np.diff(user_items.indptr)
    item_counts = np.bincount(user_items.indices, minlength=user_items.shape[1])
    return observed + everything + penalty * (weighted_norms(user_counts, X, _LOSS_BLOCK)
                                              + weighted_norms(item_counts, Y, _LOSS_BLOCK))


def _dense_factors(frame: Any, rows: int, factors: int) -> np.ndarray:
    """A Spark factor DataFrame (id, features) as a (rows, factors) float32 array indexed by
    id; rows Spark has no factors for (no observed entries) stay zero. The collected Arrow
    table is the one transient copy: each of its chunks is read in place (a list column's
    values are a view) and written into the result."""
    table = frame.toArrow()
    dense = np.zeros((rows, factors), dtype=np.float32)
    for batch in table.to_batches():
        if batch.num_rows:
            ids = batch.column("id").to_numpy()
            features = batch.column("features").flatten().to_numpy()
            dense[ids] = features.reshape(-1, factors)
    return dense
