"""The one strategy interface every mfengine model implements.

scikit-learn conventions: ``__init__`` only stores hyperparameters, ``fit`` returns ``self``,
learned state ends in ``_``, ``random_state`` (None, int or ``np.random.Generator``) seeds
everything. Factors are float32.

Scores are inner products: ``user_vector . item_factors_[i] + item_bias_[i]`` (the bias term
only for strategies that learn one). :meth:`MatrixFactorization.item_vectors` and
:meth:`MatrixFactorization.user_vectors` return the same model with the bias folded into one
extra dimension, so a vector store that only knows inner products (pgvector ``<#>``) ranks
exactly as :meth:`MatrixFactorization.recommend` does.

Artifacts: one ``.npz`` file holding the learned arrays plus a ``__metadata__`` entry, a
one-element unicode array with a JSON document (strategy name, hyperparameters, dimensions,
mfengine version, loss history). It loads with ``allow_pickle=False``. A model may also be
saved as two such files, its item side and its user side (:mod:`mfengine.sides`).
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from mfengine.recommender import (
    METADATA_KEY,
    NotFittedError,  # noqa: F401 (re-exported: mfengine.base.NotFittedError is public)
    Recommender,
    as_id_array,
    read_artifact,
)
from mfengine.topn import top_n_block, top_n_float32
from mfengine.version import __version__

Callback = Callable[[int, float], Any]
RandomState = None | int | np.random.Generator

ARTIFACT_FORMAT = "mfengine-model"
ARTIFACT_FORMAT_VERSION = 1  # a whole model in one file
# A model saved as an item side and a user side (mfengine.sides): readers older than the
# split refuse it instead of loading half a model.
SIDES_FORMAT_VERSION = 2
# Users scored per matrix product in recommend: bounds the dense score block to
# _BATCH x n_items float32 (1024 x 100k items = 400 MB would be too much, so 256).
_BATCH = 256


class NonFiniteFactorsError(FloatingPointError):
    """Training produced NaN or Inf in the factors (diverged)."""


def check_random_state(random_state: RandomState) -> np.random.Generator:
    """Turn None, an int seed or a Generator into a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, int | np.integer):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")


def random_factors(rng: np.random.Generator, rows: int, factors: int, scale: float
                   ) -> np.ndarray:
    """float32 ``standard_normal * scale``, drawn in blocks of rows: the same numbers as one
    float64 draw (the generator fills row after row), without its float64 temporaries (768 MB
    for 750k users x 64 factors)."""
    out = np.empty((rows, factors), dtype=np.float32)
    for start in range(0, rows, 65536):
        stop = min(start + 65536, rows)
        out[start:stop] = rng.standard_normal((stop - start, factors)) * scale
    return out


def check_user_items(user_items: Any, *, allow_negative: bool = True) -> sp.csr_matrix:
    """Validate and copy ``user_items`` into a canonical float32 CSR matrix."""
    if not sp.issparse(user_items):
        raise TypeError(
            f"user_items must be a scipy.sparse matrix (users x items), got {type(user_items)}"
        )
    # Copy: training must never change the caller's matrix (sum_duplicates sorts in place).
    matrix = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.sort_indices()
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError("user_items contains NaN or Inf values")
    if not allow_negative and matrix.data.size and matrix.data.min() < 0:
        raise ValueError("user_items must not contain negative strengths for this strategy")
    return matrix


class MatrixFactorization(Recommender):
    """Abstract base of every strategy, built-in or plugin.

    Subclasses set ``name``, list their learned arrays in ``_state_arrays`` and implement
    :meth:`_initialize` (allocate state from the data) and :meth:`_iterate` (one pass, returns
    the training loss). They may override :meth:`_prepare` (input validation), :meth:`fold_in`
    and :meth:`_finalize`. The base class runs the loop, the NaN/Inf check after every
    iteration and the callback.
    """

    name: ClassVar[str] = ""
    #: Learned arrays saved in artifacts; the first two are always the factors.
    _state_arrays: ClassVar[tuple[str, ...]] = ("user_factors_", "item_factors_")
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("user_factors_", "item_factors_")

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    loss_history_: np.ndarray

    #: Whether :meth:`fit` starts from given factors (``initial_item_factors``, ...); a
    #: strategy that cannot ignores them and fits cold, so callers check this before giving
    #: it fewer iterations.
    supports_warm_start: ClassVar[bool] = False

    # -- training --------------------------------------------------------------------------
    def fit(self, user_items: sp.spmatrix, callback: Callback | None = None, *,
            initial_item_factors: np.ndarray | None = None,
            initial_user_factors: np.ndarray | None = None) -> MatrixFactorization:
        """Learn factors from a users x items CSR matrix; returns self.

        ``callback(iteration, loss)`` is called after every iteration (0-based), e.g. to drive
        a progress bar. Raises :class:`NonFiniteFactorsError` if training diverges.

        Warm start (strategies with ``supports_warm_start``): ``initial_item_factors``
        (n_items x factors) and ``initial_user_factors`` (n_users x factors), e.g. a model
        fitted on a subset of the same matrix's rows and columns, replace the random start;
        an all-zero row (a user or item that model had no data for) keeps the random start a
        cold fit gives it. Other strategies ignore them and fit cold.
        """
        matrix = self._prepare(user_items)
        rng = check_random_state(getattr(self, "random_state", None))
        for attribute in (*self._state_arrays, "loss_history_"):
            self.__dict__.pop(attribute, None)
        self._initialize(matrix, rng)
        if self.supports_warm_start:
            self._warm_start(self.user_factors_, initial_user_factors, "initial_user_factors")
            self._warm_start(self.item_factors_, initial_item_factors, "initial_item_factors")
        losses: list[float] = []
        iterations = int(getattr(self, "iterations", 1))
        try:
            for iteration in range(iterations):
                loss = float(self._iterate(matrix, iteration, rng))
                self._check_finite(iteration)
                losses.append(loss)
                if callback is not None:
                    callback(iteration, loss)
            self._finalize(matrix)
        except BaseException:
            # A failed fit leaves no half-trained model behind that could be served.
            for attribute in (*self._state_arrays, "loss_history_"):
                self.__dict__.pop(attribute, None)
            raise
        self.loss_history_ = np.asarray(losses, dtype=np.float64)
        return self

    def _prepare(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        return check_user_items(user_items)

    @staticmethod
    def _warm_start(factors: np.ndarray, initial: np.ndarray | None, name: str) -> None:
        """Copy the non-zero rows of ``initial`` over the freshly initialised ``factors``."""
        if initial is None:
            return
        initial = np.asarray(initial)
        if initial.shape != factors.shape:
            raise ValueError(f"{name} has shape {initial.shape}, the fit needs {factors.shape}")
        if not np.all(np.isfinite(initial)):
            raise ValueError(f"{name} contains NaN or Inf")
        known = np.any(initial != 0, axis=1)
        factors[known] = initial[known]

    @abc.abstractmethod
    def _initialize(self, user_items: sp.csr_matrix, rng: np.random.Generator) -> None:
        """Allocate and initialise the learned arrays."""

    @abc.abstractmethod
    def _iterate(
        self, user_items: sp.csr_matrix, iteration: int, rng: np.random.Generator
    ) -> float:
        """Run one iteration (epoch) in place and return the training loss."""

    def _finalize(self, user_items: sp.csr_matrix) -> None:
        """Hook run after the last iteration (e.g. to drop training scratch state)."""
        return None

    def _check_finite(self, iteration: int | None = None) -> None:
        for attribute in self._state_arrays:
            value = getattr(self, attribute, None)
            if value is not None and not np.all(np.isfinite(value)):
                where = f" after iteration {iteration}" if iteration is not None else ""
                raise NonFiniteFactorsError(
                    f"{type(self).__name__}: NaN or Inf in {attribute}{where}; training "
                    "diverged (lower learning_rate/alpha or raise regularization)"
                )

    # -- state ---------------------------------------------------------------------------
    @property
    def n_users_(self) -> int:
        self._check_fitted()
        return int(self.user_factors_.shape[0])

    @property
    def n_items_(self) -> int:
        self._check_fitted()
        return int(self.item_factors_.shape[0])

    @property
    def n_factors_(self) -> int:
        self._check_fitted()
        return int(self.item_factors_.shape[1])

    def _item_bias(self) -> np.ndarray | None:
        """Per-item additive score term, or None (override when the strategy has one)."""
        return None

    def item_vectors(self) -> np.ndarray:
        """Item factors with the item bias appended as a last column (if the strategy has one).

        ``user_vectors(u) @ item_vectors().T`` equals :meth:`score`, so these are the vectors to
        put in an inner-product index.
        """
        self._check_fitted()
        bias = self._item_bias()
        if bias is None:
            return self.item_factors_
        return np.hstack([self.item_factors_, bias[:, None]]).astype(np.float32)

    def user_vectors(self, user_vectors: np.ndarray | None = None) -> np.ndarray:
        """User vectors (learned ones by default) shaped to match :meth:`item_vectors`."""
        self._check_fitted()
        vectors = self.user_factors_ if user_vectors is None else np.asarray(user_vectors)
        vectors = np.atleast_2d(vectors).astype(np.float32, copy=False)
        if self._item_bias() is None:
            return vectors
        return np.hstack([vectors, np.ones((vectors.shape[0], 1), np.float32)])

    # -- scoring -------------------------------------------------------------------------
    def score(self, user_vectors: np.ndarray, item_ids: Any = None) -> np.ndarray:
        """Scores of user vectors (n, factors) against all items or ``item_ids``."""
        self._check_fitted()
        vectors = np.atleast_2d(np.asarray(user_vectors, dtype=np.float32))
        factors = self.item_factors_
        bias = self._item_bias()
        if item_ids is not None:
            ids = self._check_item_ids(item_ids)
            factors = factors[ids]
            bias = None if bias is None else bias[ids]
        scores = vectors @ factors.T
        if bias is not None:
            scores += bias
        return scores

    def _check_user_ids(self, users: np.ndarray) -> None:
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise IndexError(f"user ids must be in [0, {self.n_users_})")

    def _check_item_ids(self, item_ids: Any) -> np.ndarray:
        ids = as_id_array(item_ids, "item_ids")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_items_):
            raise IndexError(f"item ids must be in [0, {self.n_items_})")
        return ids

    def recommend(
        self,
        user_ids: Any,
        user_items: sp.spmatrix | None = None,
        n: int = 10,
        filter_seen: bool = True,
        items: Any = None,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for learned users, best first.

        ``user_items`` is the users x items matrix whose rows are indexed by user id (the
        training matrix, or a newer one with the same item columns); with ``filter_seen`` the
        items in each user's row are never returned. ``items`` restricts the candidates to a
        subset; ``exclude`` removes ids for every user.

        Returns ``(ids, scores)``, int64 and float32 arrays of shape (len(user_ids), n) (1-d
        for a scalar user id). Equal scores go to the lower item id. When fewer than ``n``
        candidates remain for a user, the row is padded with id -1 and score -inf.
        """
        # Without filter_seen the matrix is not needed, so it is not checked either.
        scalar, users, seen = self._history_rows(
            user_ids, user_items if filter_seen else None, filter_seen
        )
        ids, scores = self.recommend_vectors(
            self.user_factors_[users], n=n, seen=seen, items=items, exclude=exclude
        )
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def recommend_vectors(
        self,
        user_vectors: np.ndarray,
        n: int = 10,
        seen: sp.spmatrix | None = None,
        items: Any = None,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for raw user vectors (e.g. from :meth:`fold_in`), best first.

        ``seen``: optional sparse matrix with one row per vector whose items are removed.
        ``items``/``exclude``/padding as in :meth:`recommend`. A 1-d vector gives 1-d results.
        """
        self._check_fitted()
        vectors = np.asarray(user_vectors, dtype=np.float32)
        single = vectors.ndim == 1
        vectors = np.atleast_2d(vectors)
        if vectors.shape[1] != self.n_factors_:
            raise ValueError(f"user vectors have {vectors.shape[1]} dims, model {self.n_factors_}")
        if n < 0:
            raise ValueError("n must be >= 0")
        candidates = (
            np.arange(self.n_items_) if items is None else np.unique(self._check_item_ids(items))
        )
        # position of each item among the candidates, -1 if it is not one
        position = np.full(self.n_items_, -1, dtype=np.int64)
        position[candidates] = np.arange(candidates.size)
        excluded = None
        if exclude is not None:
            excluded = position[self._check_item_ids(exclude)]
            excluded = excluded[excluded >= 0]
        if seen is not None:
            seen = sp.csr_matrix(seen)
            if seen.shape[0] != vectors.shape[0]:
                raise ValueError("seen must have one row per user vector")
        factors = self.item_factors_[candidates] if items is not None else self.item_factors_
        bias = self._item_bias()
        if bias is not None and items is not None:
            bias = bias[candidates]

        count = vectors.shape[0]
        ids = np.full((count, n), -1, dtype=np.int64)
        scores_out = np.full((count, n), -np.inf, dtype=np.float32)
        for start in range(0, count, _BATCH):
            stop = min(start + _BATCH, count)
            block = vectors[start:stop] @ factors.T
            if bias is not None:
                block += bias
            if excluded is not None and excluded.size:
                block[:, excluded] = -np.inf
            if seen is not None:
                # seen items -> -inf inside the kernel (positions -1: not a candidate)
                rows = seen[start:stop]
                top, top_scores = top_n_block(block, n, rows.indptr, position[rows.indices])
            else:
                top, top_scores = top_n_block(block, n)
            valid = top >= 0
            top[valid] = candidates[top[valid]]
            ids[start:stop] = top
            scores_out[start:stop] = top_scores
        if single:
            return ids[0], scores_out[0]
        return ids, scores_out

    def fold_in(self, item_ids: Any, strengths: Any = None) -> np.ndarray:
        """A user vector for a user who interacted with ``item_ids`` (item factors fixed).

        ``strengths`` default to 1.0 (ratings for explicit strategies). Returns float32
        (factors,). Strategies override this with the solve of their own objective.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support fold_in")

    def _fold_in_inputs(self, item_ids: Any, strengths: Any) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        ids = self._check_item_ids(item_ids)
        if strengths is None:
            values = np.ones(ids.size, dtype=np.float32)
        else:
            values = np.asarray(strengths, dtype=np.float32).reshape(-1)
            if values.shape != ids.shape:
                raise ValueError("strengths must have one value per item id")
            if not np.all(np.isfinite(values)):
                raise ValueError("strengths contain NaN or Inf")
        # Repeated items add up, as duplicates do in the training matrix.
        unique, inverse = np.unique(ids, return_inverse=True)
        summed = np.zeros(unique.size, dtype=np.float32)
        np.add.at(summed, inverse, values)
        return unique, summed

    def similar_items(self, item_ids: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar by cosine of item factors, the item itself excluded.

        Returns ``(ids, scores)`` of shape (len(item_ids), n), 1-d for a scalar id; padded
        with -1 / -inf if the catalogue has fewer than n other items.
        """
        self._check_fitted()
        scalar = np.ndim(item_ids) == 0
        ids = self._check_item_ids(item_ids)
        norms = np.linalg.norm(self.item_factors_, axis=1)
        normalized = self.item_factors_ / np.maximum(norms, 1e-12)[:, None]
        results = []
        for start in range(0, ids.size, _BATCH):
            chunk = ids[start : start + _BATCH]
            self_hit = sp.csr_matrix(
                (np.ones(chunk.size), (np.arange(chunk.size), chunk)),
                shape=(chunk.size, self.n_items_),
            )
            results.append(
                top_n_float32(normalized[chunk] @ normalized.T, n, self_hit)
            )
        out_ids = np.concatenate([r[0] for r in results]) if results else np.empty((0, n), int)
        out_scores = (
            np.concatenate([r[1] for r in results]) if results else np.empty((0, n), np.float32)
        )
        if scalar:
            return out_ids[0], out_scores[0]
        return out_ids, out_scores

    # -- artifacts ---------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """The JSON metadata written into artifacts."""
        self._check_fitted()
        params = {
            k: (None if isinstance(v, np.random.Generator) else v)
            for k, v in self.get_params().items()
        }
        return {
            "format": ARTIFACT_FORMAT,
            "format_version": ARTIFACT_FORMAT_VERSION,
            "strategy": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "hyperparameters": params,
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "factors": self.n_factors_,
            "mfengine_version": __version__,
            "loss_history": [float(x) for x in getattr(self, "loss_history_", [])],
            "arrays": list(self._state_arrays),
        }

    def _artifact_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self._state_arrays}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MatrixFactorization:
        """Read a model saved by :meth:`save` (the strategy is taken from the metadata)."""
        model = load(path)
        if cls is not MatrixFactorization and not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of an artifact, without loading the arrays."""
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive[METADATA_KEY][0]))


# How a strategy name in an artifact becomes a class. mfengine.plugins installs its registry
# lookup when the package is imported, so this module does not import the strategies that
# import it (no cycle base -> plugins -> als -> base).
_strategy_resolver: Callable[[str], type[MatrixFactorization]] | None = None


def set_strategy_resolver(resolver: Callable[[str], type[MatrixFactorization]]) -> None:
    """Install the name -> strategy class lookup used by :func:`load`."""
    global _strategy_resolver
    _strategy_resolver = resolver


def load(path: str | os.PathLike[str]) -> MatrixFactorization:
    """Load a model saved with :meth:`MatrixFactorization.save` (``allow_pickle=False``).
    A model saved in two parts is read with :func:`mfengine.sides.load_sides`."""
    metadata, arrays = read_artifact(path)
    check_model_metadata(metadata, path)
    if metadata.get("part"):
        raise ValueError(f"{path} holds a model's {metadata['part']} side only: read it with "
                         "mfengine.load_item_side or mfengine.load_sides")
    return model_from_arrays(metadata, arrays)


def check_model_metadata(metadata: dict[str, Any], path: Any) -> None:
    """ValueError unless ``metadata`` is an mfengine model artifact's this version reads."""
    if metadata.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path} is not an mfengine model artifact")
    if metadata.get("format_version", 0) > SIDES_FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer mfengine (format too new)")


def model_from_arrays(metadata: dict[str, Any], arrays: dict[str, np.ndarray]
                      ) -> MatrixFactorization:
    """The strategy named in ``metadata`` with its hyperparameters and the learned
    ``arrays`` (every name in ``metadata["arrays"]``) set."""
    if _strategy_resolver is None:  # only if mfengine.base was loaded outside the package
        raise RuntimeError("no strategy registry installed; import mfengine first")
    model = _strategy_resolver(metadata["strategy"])(**metadata["hyperparameters"])
    for name in metadata["arrays"]:
        setattr(model, name, arrays[name])
    model.loss_history_ = np.asarray(metadata.get("loss_history", []), dtype=np.float64)
    return model
