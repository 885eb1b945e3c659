"""What serving needs of a model version, read through the storage API and kept in the
process's byte-bounded cache (serving/cache.py): the mfengine model's item side (item
factors, biases, the fold-in Gram matrix), the item id map, the norm head, and the popularity
and content fallbacks. User factors stay out of web processes: a user's vector comes from
Postgres with the rest of the request's state (serving/state.py), and the version's user-side
files (registry/artifacts.py) are never opened.

`load_bundle` reads everything, user factors included, without caching: for what runs
offline (precompute, tests, benchmarks)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

import mfengine
from mfengine.baselines import ContentRecommender, PopularityRecommender
from mfengine.cold import SegmentVectors
from mfengine.ids import positions
from mfplatform.registry.artifacts import (
    artifact_exists,
    open_artifact,
    read_item_ids,
    read_item_side_model,
    read_model,
    read_user_ids,
)
from mfplatform.registry.models import ModelKind, ModelVersion
from mfplatform.serving.cache import CACHE, ByteLRU, serving_cache

# Items scored exactly on every search: the largest item vectors (see candidates.norm_head).
NORM_HEAD = 2048
_CACHE = CACHE  # the process's cache (a test clears it, as a worker that never loaded)


@dataclass
class ModelBundle:
    version_id: int
    kind: str
    model: mfengine.MatrixFactorization | None
    item_ids: np.ndarray  # column -> Item pk (sorted)
    user_ids: np.ndarray | None  # row -> EndUser pk (sorted); None in serving's bundles
    popularity: PopularityRecommender
    content: ContentRecommender | None
    event_weights: dict[str, float]
    cutoff: float  # unix seconds of the dataset version's cutoff
    # (Item pks, item vectors) of the NORM_HEAD largest item vectors, for candidate search.
    head: tuple[np.ndarray, np.ndarray] | None = None
    # The mean user vector per `segment` attribute, for users without events (versions
    # published before cold start have none).
    segments: SegmentVectors | None = None
    _popular: dict = field(default_factory=dict, repr=False)

    def columns(self, item_pks) -> np.ndarray:
        """Column per Item pk, -1 where the model has no such item."""
        return positions(self.item_ids, item_pks)

    def row(self, user_pk: int) -> int:
        """Row of the EndUser pk in the user factors, -1 where the model has no such user
        (only bundles loaded with their user side have rows)."""
        if self.user_ids is None:
            raise ValueError("serving's bundles hold no user side: the vector is in Postgres")
        return int(positions(self.user_ids, [user_pk])[0])

    def item_pks(self, columns) -> np.ndarray:
        return self.item_ids[np.asarray(columns, dtype=np.int64)]

    def popular(self, category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Item pks, scores) of every item (or one category's) by popularity, best first;
        ranked once per process, not per request (a full sort of the catalogue). The cache
        charges every category's ranking up front (`nbytes`)."""
        ranked = self._popular.get(category)
        if ranked is None:
            ids, scores = self.popularity.top_items(n=self.popularity.n_items_,
                                                    category=category)
            valid = ids >= 0
            ranked = (self.item_pks(ids[valid]), scores[valid])
            self._popular[category] = ranked
        return ranked

    def nbytes(self) -> int:
        """What the bundle holds, in bytes: its arrays by `nbytes` (sparse ones by their
        parts), the popularity rankings of every category counted as if already made."""
        size = nbytes_of(self)
        if hasattr(self.popularity, "item_categories_"):
            per_item = self.item_ids.itemsize + self.popularity.item_scores_.itemsize
            size += len(self.item_ids) * per_item  # the categories' rankings, at most
        return size


def nbytes_of(value, seen: set[int] | None = None) -> int:
    """Bytes of the arrays reachable from `value` (attributes, dicts, lists, tuples), each
    counted once, plus a little for every other object; a measure, not sys.getsizeof."""
    seen = set() if seen is None else seen
    if id(value) in seen or value is None or isinstance(value, bool | int | float):
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.base is None or id(value.base) not in seen else 0
    if sp.issparse(value):
        return sum(nbytes_of(getattr(value, part, None), seen)
                   for part in ("data", "indices", "indptr", "row", "col"))
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return 64 + sum(nbytes_of(k, seen) + nbytes_of(v, seen) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 56 + sum(nbytes_of(v, seen) for v in value)
    if hasattr(value, "__dict__"):
        return 64 + nbytes_of(vars(value), seen)
    return 16


def serving_bundle(version: ModelVersion, cache: ByteLRU | None = None) -> ModelBundle:
    """The version's item-side bundle from the process's cache, loaded once on a miss."""
    cache = serving_cache() if cache is None else cache

    def load():
        bundle = _load(version, users=False)
        return bundle, bundle.nbytes()

    return cache.get_or_load(("bundle", version.pk), load)


def load_bundle(version: ModelVersion) -> ModelBundle:
    """Everything of the version, user factors and ids included, read now and not cached
    (precompute, tests and benchmarks; serving uses `serving_bundle`)."""
    return _load(version, users=True)


def _load(version: ModelVersion, users: bool) -> ModelBundle:
    model = None
    if version.kind == ModelKind.MF:
        model = read_model(version) if users else read_item_side_model(version)
    with open_artifact(version, "popularity.npz") as handle:
        popularity = PopularityRecommender.load(handle)
    content = None
    if artifact_exists(version, "content.npz"):
        with open_artifact(version, "content.npz") as handle:
            content = ContentRecommender.load(handle)
    bundle = ModelBundle(
        version_id=version.pk, kind=version.kind, model=model,
        item_ids=read_item_ids(version), user_ids=read_user_ids(version) if users else None,
        popularity=popularity, content=content,
        event_weights=dict(version.plan_revision.config["events"]),
        cutoff=version.dataset_version.cutoff.timestamp())
    if model is not None:
        bundle.head = _norm_head(bundle)
        _warm_fold_in(model)
        if artifact_exists(version, "segments.npz"):
            with open_artifact(version, "segments.npz") as handle:
                bundle.segments = SegmentVectors.load(handle)
    bundle.popular()
    return bundle


def _norm_head(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    vectors = bundle.model.item_vectors()
    columns = np.argsort(-np.linalg.norm(vectors, axis=1), kind="stable")[:NORM_HEAD]
    return bundle.item_pks(columns), np.ascontiguousarray(vectors[columns])


def _warm_fold_in(model: mfengine.MatrixFactorization) -> None:
    """Fold in one item now, so that what a strategy keeps for fold-in (ALS: the item
    factors' Gram matrix) is built at load, counted in the bundle's bytes, and no request
    pays for it."""
    if model.n_items_:
        with contextlib.suppress(NotImplementedError):  # a plugin without fold-in
            model.fold_in(np.zeros(1, np.int64), np.ones(1, np.float32))
