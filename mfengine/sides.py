"""A model saved as two files: its item side and its user side.

The item side is what scores, folds in and exports item vectors: the item factors and biases
and a strategy's other learned state (ALS's regularization, SGD's global mean). The user side
is the learned users' factors and biases, every state array named ``user_*``. A process that
scores user vectors it gets elsewhere (from a vector store, or folded in from events) reads the
item side alone, whose size does not grow with the number of users.

Both files are artifacts of the usual format (arrays plus a ``__metadata__`` JSON string, read
with ``allow_pickle=False``) marked with their ``part`` and a format version that readers older
than the split refuse; :func:`load_sides` joins them into the model that
:meth:`~mfengine.base.MatrixFactorization.save` would have saved whole.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

import numpy as np

from mfengine.base import (
    ARTIFACT_FORMAT,
    SIDES_FORMAT_VERSION,
    MatrixFactorization,
    check_model_metadata,
    model_from_arrays,
)
from mfengine.recommender import METADATA_KEY, read_artifact, write_artifact

Destination = str | os.PathLike[str] | IO[bytes]
# What both sides record of the model, so that two files of different models do not join.
_SHARED_KEYS = ("strategy", "n_users", "n_items", "factors")


def is_user_side(array_name: str) -> bool:
    return array_name.startswith("user_")


def save_item_side(model: MatrixFactorization, path: Destination) -> None:
    """The model's item side, with its full metadata and the dtype and trailing shape of
    each user-side array (so that :func:`load_item_side` can stand in empty ones)."""
    model._check_fitted()
    arrays = model._artifact_arrays()
    items = {name: array for name, array in arrays.items() if not is_user_side(name)}
    user_arrays = {name: {"shape": list(np.shape(array)[1:]),
                          "dtype": np.asarray(array).dtype.str}
                   for name, array in arrays.items() if is_user_side(name)}
    write_artifact(path, items, {**model.metadata(), "format_version": SIDES_FORMAT_VERSION,
                                 "part": "item", "arrays": list(items),
                                 "user_arrays": user_arrays})


def save_user_side(model: MatrixFactorization, path: Destination) -> None:
    """The learned users' arrays (factors, biases), with what identifies the model."""
    model._check_fitted()
    users = {name: array for name, array in model._artifact_arrays().items()
             if is_user_side(name)}
    metadata = model.metadata()
    write_artifact(path, users, {
        "format": ARTIFACT_FORMAT, "format_version": SIDES_FORMAT_VERSION, "part": "user",
        **{key: metadata[key] for key in _SHARED_KEYS}, "arrays": list(users)})


def load_item_side(path: Destination) -> MatrixFactorization:
    """The model's item side, from an item-side file or from a whole model's file (whose
    user arrays then stay unread in it). Each user-side array stands as an empty array of its
    dtype (0 rows): the model scores, folds in and exports item vectors as the whole one
    does, and has no learned users (``n_users_`` is 0)."""
    with np.load(path, allow_pickle=False) as archive:
        if METADATA_KEY not in archive.files:
            raise ValueError(f"{path} is not an mfengine model artifact (no metadata)")
        metadata = _json(archive)
        check_model_metadata(metadata, path)
        part = metadata.get("part")
        if part == "user":
            raise ValueError(f"{path} holds a model's user side, not its item side")
        if part == "item":
            arrays = {name: archive[name] for name in metadata["arrays"]}
            empty = {name: np.empty((0, *spec["shape"]), dtype=np.dtype(spec["dtype"]))
                     for name, spec in metadata["user_arrays"].items()}
        else:
            arrays = {name: archive[name] for name in metadata["arrays"]
                      if not is_user_side(name)}
            empty = {name: _empty_rows(archive, name) for name in metadata["arrays"]
                     if is_user_side(name)}
    return model_from_arrays({**metadata, "arrays": [*arrays, *empty]}, {**arrays, **empty})


def load_sides(items: Destination, users: Destination) -> MatrixFactorization:
    """The whole model from its two files (``allow_pickle=False``)."""
    item_metadata, arrays = read_artifact(items)
    user_metadata, user_arrays = read_artifact(users)
    for metadata, path, part in ((item_metadata, items, "item"),
                                 (user_metadata, users, "user")):
        check_model_metadata(metadata, path)
        if metadata.get("part") != part:
            raise ValueError(f"{path} is not a model's {part} side")
    if any(item_metadata[key] != user_metadata[key] for key in _SHARED_KEYS):
        raise ValueError(f"{items} and {users} are the two sides of different models")
    return model_from_arrays(
        {**item_metadata, "arrays": [*item_metadata["arrays"], *user_metadata["arrays"]]},
        {**arrays, **user_arrays})


def _json(archive: Any) -> dict[str, Any]:
    return json.loads(str(archive[METADATA_KEY][0]))


def _empty_rows(archive: Any, name: str) -> np.ndarray:
    """An array of 0 rows with the stored array's dtype and trailing shape, read from its
    .npy header alone (the data is never read)."""
    with archive.zip.open(f"{name}.npy") as member:
        major, _minor = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if major == 1
                else np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = read(member)
    return np.empty((0, *shape[1:]), dtype=dtype)
