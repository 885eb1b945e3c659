"""The one abstract base of everything that recommends: strategies and baselines.

It owns what they all share: hyperparameters (scikit-learn style ``get_params`` /
``set_params`` read from ``__init__``'s signature), the fitted check (always
:class:`NotFittedError`), the validation of ``recommend``'s users and history matrix, the
artifact format (one ``.npz`` of arrays plus a JSON ``__metadata__`` string, read with
``allow_pickle=False``) and the thread limits of the hot calls (:mod:`mfengine.threads`).
"""

from __future__ import annotations

import abc
import inspect
import json
import os
from typing import IO, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from mfengine.threads import single_blas_thread

METADATA_KEY = "__metadata__"

# Methods that run BLAS or numba kernels: wrapped in the engine's thread limits wherever a
# subclass (a plugin too) defines them.
_HOT_METHODS = ("fit", "fold_in", "recommend_vectors", "similar_items", "_recommend_history")


class NotFittedError(ValueError, AttributeError):
    """A model was used before ``fit`` (or ``load``)."""


def as_id_array(ids: Any, name: str) -> np.ndarray:
    """A 1-d int64 array of ids; a 2-d input or non-integer values name the argument."""
    array = np.asarray(ids)
    if array.ndim > 1:
        raise ValueError(f"{name} must be an int or a 1-d array of ints")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False).reshape(-1)


def write_artifact(
    path: str | os.PathLike[str] | IO[bytes], arrays: dict[str, np.ndarray],
    metadata: dict[str, Any]
) -> None:
    """One ``.npz``: ``arrays`` plus the JSON ``metadata`` as a one-element string array,
    into a file at ``path`` or into a writable binary stream (the caller stores it)."""
    contents = dict(arrays)
    contents[METADATA_KEY] = np.array([json.dumps(metadata)])
    if hasattr(path, "write"):
        np.savez(path, **contents)
        return
    with open(path, "wb") as handle:  # open() so numpy does not append ".npz"
        np.savez(handle, **contents)


def read_artifact(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of an artifact written by :func:`write_artifact`, without pickles."""
    with np.load(path, allow_pickle=False) as archive:
        if METADATA_KEY not in archive.files:
            raise ValueError(f"{path} is not an mfengine model artifact (no metadata)")
        metadata = json.loads(str(archive[METADATA_KEY][0]))
        arrays = {name: archive[name] for name in archive.files if name != METADATA_KEY}
    return metadata, arrays


class Recommender(abc.ABC):
    """Abstract base: ``fit(user_items, ...) -> self`` and ``recommend(user_ids, user_items, n,
    filter_seen, items, exclude) -> (ids, scores)``, best first, padded with -1 / -inf."""

    name: ClassVar[str] = ""
    n_items_: int
    #: Attributes that exist once the model is fitted or loaded.
    _fitted_attributes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method_name in _HOT_METHODS:
            method = cls.__dict__.get(method_name)
            if callable(method) and not getattr(method, "_engine_threads", False):
                wrapped = single_blas_thread(method)
                wrapped._engine_threads = True  # type: ignore[attr-defined]
                setattr(cls, method_name, wrapped)

    # -- hyperparameters -------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__`` (scikit-learn style)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Change hyperparameters; unknown names raise TypeError naming them."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise TypeError(
                    f"unknown hyperparameter {key!r} for strategy {self.name!r}; "
                    f"accepted: {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- state -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if any(name not in self.__dict__ for name in self._fitted_attributes):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit() or load() first"
            )

    # -- recommend input -------------------------------------------------------------------
    def _check_user_ids(self, users: np.ndarray) -> None:
        """Hook: reject user ids the model cannot score (strategies know their users)."""
        return None

    def _history_rows(
        self, user_ids: Any, user_items: sp.spmatrix | None, filter_seen: bool
    ) -> tuple[bool, np.ndarray, sp.csr_matrix | None]:
        """(scalar?, user ids, their rows of ``user_items`` or None) after validation."""
        self._check_fitted()
        scalar = np.ndim(user_ids) == 0
        users = as_id_array(user_ids, "user_ids")
        self._check_user_ids(users)
        if user_items is None:
            if filter_seen:
                raise ValueError("filter_seen=True needs user_items (or pass filter_seen=False)")
            return scalar, users, None
        matrix = sp.csr_matrix(user_items)
        if matrix.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items has {matrix.shape[1]} item columns, the model {self.n_items_}"
            )
        if users.size and users.max() >= matrix.shape[0]:
            raise ValueError("user_items has no row for some user ids (rows = user ids)")
        return scalar, users, matrix[users]

    @abc.abstractmethod
    def recommend(
        self,
        user_ids: Any,
        user_items: sp.spmatrix | None = None,
        n: int = 10,
        filter_seen: bool = True,
        items: Any = None,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per user, best first."""

    # -- artifacts -------------------------------------------------------------------------
    @abc.abstractmethod
    def metadata(self) -> dict[str, Any]:
        """The JSON metadata written into artifacts."""

    @abc.abstractmethod
    def _artifact_arrays(self) -> dict[str, np.ndarray]:
        """The learned arrays written into artifacts."""

    def save(self, path: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write the model to one ``.npz`` file or binary stream (arrays + ``__metadata__``
        JSON string)."""
        self._check_fitted()
        write_artifact(path, self._artifact_arrays(), self.metadata())
