"""A model version's files in the default storage: the fitted model, its id maps and the
popularity and content fallbacks serving falls back to. Publication writes them all, and
records their sha256, before the version's row commits, so a committed version always has its
files and promotion can tell a damaged one (`damaged_artifacts`); serving and re-evaluation
read them through the storage API (`open_artifact`), never a local path, so a web process need
not share a disk with the worker that wrote them.

An MF version's model and id maps are each split in two files by side: the item side, all
that a web process reads (it gets users' vectors from pgvector), and the user side, which only
the worker's offline steps read (precomputed lists, re-evaluation with learned users). A
version published before the split has one file of each with both sides (`model.npz`,
`ids.npz`); the readers below read those when a version has no split files."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable
from typing import IO

import numpy as np
from django.core.files import File
from django.core.files.storage import default_storage

import mfengine
from mfengine.baselines import ContentRecommender, PopularityRecommender, item_tokens
from mfplatform.registry.models import ModelVersion
from mfplatform.training.models import TrainingRun

MODEL_ITEMS = "model_items.npz"  # mfengine.sides: item factors, biases, learned state
MODEL_USERS = "model_users.npz"  # the learned users' factors and biases
ITEM_IDS = "item_ids.npz"  # column -> Item pk
USER_IDS = "user_ids.npz"  # row -> EndUser pk
WHOLE_MODEL = "model.npz"  # before the split: both sides of the model
BOTH_IDS = "ids.npz"  # before the split: item_ids and user_ids


def new_artifact_dir(run: TrainingRun) -> str:
    """A folder of its own for a model version's files (model, fallbacks, id maps), in the
    default storage. Unique, so that databases sharing a storage (a test run beside the
    development server, a benchmark) never overwrite each other's files. Nothing is created
    yet: a storage makes the folder (or key prefix) when the first file is saved in it."""
    return f"models/{run.tenant_id}/{run.plan_id}/{uuid.uuid4().hex}"


def store_file(folder: str, filename: str, write: Callable[[IO[bytes]], None]) -> str:
    """`write` fills a buffer that is saved as `folder/filename` through the default storage
    (a local folder or a bucket: the writer never needs a local path). Its name in the
    storage is returned."""
    buffer = io.BytesIO()
    write(buffer)
    buffer.seek(0)
    name = f"{folder}/{filename}"
    saved = default_storage.save(name, File(buffer, name=filename))
    if saved != name:  # the folder is new, so a taken name means someone else writes in it
        default_storage.delete(saved)
        raise FileExistsError(f"{name} already exists in the artifact storage")
    return saved


def delete_folder(folder: str) -> None:
    """Every file in the folder, through the storage API (a bucket has no folders to remove;
    a local storage keeps the empty folder)."""
    try:
        _dirs, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")


def artifact_name(version: ModelVersion, filename: str) -> str:
    """The file's name in the default storage; FileNotFoundError for a version without
    files (a row made by hand, never published)."""
    if not version.artifact:
        raise FileNotFoundError(f"model version {version.pk} has no artifact folder")
    return f"{version.artifact}/{filename}"


def open_artifact(version: ModelVersion, filename: str) -> File:
    """The file, opened for reading through the default storage (local folder, object
    storage, ...). Raises FileNotFoundError (an OSError) when it is not there."""
    return default_storage.open(artifact_name(version, filename), "rb")


def artifact_exists(version: ModelVersion, filename: str) -> bool:
    return bool(version.artifact) and default_storage.exists(artifact_name(version, filename))


def save_fallbacks(folder: str, prepared, catalogue) -> None:
    """Popularity and content models next to every version, for serving's fallback chain,
    and the id maps, into the version's `folder`."""
    popularity = PopularityRecommender().fit(prepared.matrix,
                                             item_categories=catalogue["categories"])
    store_file(folder, "popularity.npz", popularity.save)
    tokens = item_tokens(prepared.shape[1], **catalogue)
    if any(tokens):
        store_file(folder, "content.npz", ContentRecommender().fit(prepared.matrix, tokens).save)
    store_file(folder, ITEM_IDS, lambda out: np.savez(
        out, item_ids=prepared.item_ids.astype(np.int64)))
    store_file(folder, USER_IDS, lambda out: np.savez(
        out, user_ids=prepared.user_ids.astype(np.int64)))


def save_model(folder: str, model: mfengine.MatrixFactorization) -> None:
    store_file(folder, MODEL_ITEMS, lambda out: mfengine.save_item_side(model, out))
    store_file(folder, MODEL_USERS, lambda out: mfengine.save_user_side(model, out))


def is_split(version: ModelVersion) -> bool:
    """Whether the version's files are split by side: publication records every file's
    checksum, and versions from before the split have no item id file among them."""
    return ITEM_IDS in (version.checksums or {})


def read_item_side_model(version: ModelVersion) -> mfengine.MatrixFactorization:
    """The version's model without its learned users (`mfengine.load_item_side`): what
    scoring, fold-in and item vectors need, the user-side file never opened."""
    with open_artifact(version, MODEL_ITEMS if is_split(version) else WHOLE_MODEL) as handle:
        return mfengine.load_item_side(handle)


def read_model(version: ModelVersion) -> mfengine.MatrixFactorization:
    """The version's whole model, learned users included (offline steps only)."""
    if not is_split(version):
        with open_artifact(version, WHOLE_MODEL) as handle:
            return mfengine.load(handle)
    with open_artifact(version, MODEL_ITEMS) as items, open_artifact(version,
                                                                     MODEL_USERS) as users:
        return mfengine.load_sides(items, users)


def read_item_ids(version: ModelVersion) -> np.ndarray:
    return _read_ids(version, ITEM_IDS, "item_ids")


def read_user_ids(version: ModelVersion) -> np.ndarray:
    return _read_ids(version, USER_IDS, "user_ids")


def _read_ids(version: ModelVersion, filename: str, key: str) -> np.ndarray:
    with open_artifact(version, filename if is_split(version) else BOTH_IDS) as handle, \
            np.load(handle, allow_pickle=False) as ids:
        return ids[key]


def _sha256(name: str) -> str:
    digest = hashlib.sha256()
    with default_storage.open(name, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: str) -> dict[str, str]:
    """sha256 of every file in the version's folder, by file name."""
    _dirs, files = default_storage.listdir(folder)
    return {name: _sha256(f"{folder}/{name}") for name in sorted(files)}


def damaged_artifacts(version: ModelVersion) -> str | None:
    """Why the version's files cannot be trusted (a file gone, or not the bytes published),
    or None. Versions published before checksums were recorded are checked for presence;
    a version row without a files folder (made by hand, not by publication) has nothing to
    check."""
    if not version.artifact:
        return None
    expected = version.checksums or {
        name: None for name in ([WHOLE_MODEL] if version.kind == "mf" else []) + [
            BOTH_IDS, "popularity.npz"]}
    for name, checksum in expected.items():
        path = f"{version.artifact}/{name}"
        try:
            if not default_storage.exists(path):
                return f"{name} is missing"
            if checksum is not None and _sha256(path) != checksum:
                return f"{name} is not the file that was published (checksum mismatch)"
        except OSError as exc:
            return f"{name} cannot be read: {exc}"
    return None
