"""What serving needs of a model version, loaded once per process and cached by version id:
the mfengine model (factors), the id maps, and the popularity and content fallbacks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

import mfengine
from mfengine.baselines import ContentRecommender, PopularityRecommender
from mfengine.ids import positions
from mfplatform.registry.artifacts import artifact_path
from mfplatform.registry.models import ModelKind, ModelVersion

_CACHE: dict[int, ModelBundle] = {}
_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()
_MAX_CACHED = 8


@dataclass
class ModelBundle:
    version_id: int
    kind: str
    model: mfengine.MatrixFactorization | None
    item_ids: np.ndarray  # column -> Item pk (sorted)
    user_ids: np.ndarray  # row -> EndUser pk (sorted)
    popularity: PopularityRecommender
    content: ContentRecommender | None
    event_weights: dict[str, float]
    cutoff: float  # unix seconds of the dataset version's cutoff
    _popular: dict = field(default_factory=dict, repr=False)

    def columns(self, item_pks) -> np.ndarray:
        """Column per Item pk, -1 where the model has no such item."""
        return positions(self.item_ids, item_pks)

    def row(self, user_pk: int) -> int:
        """Row of the EndUser pk in the user factors, -1 where the model has no such user."""
        return int(positions(self.user_ids, [user_pk])[0])

    def item_pks(self, columns) -> np.ndarray:
        return self.item_ids[np.asarray(columns, dtype=np.int64)]

    def popular(self, category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Item pks, scores) of every item (or one category's) by popularity, best first;
        ranked once per process, not per request (a full sort of the catalogue)."""
        ranked = self._popular.get(category)
        if ranked is None:
            ids, scores = self.popularity.top_items(n=self.popularity.n_items_,
                                                    category=category)
            valid = ids >= 0
            ranked = (self.item_pks(ids[valid]), scores[valid])
            self._popular[category] = ranked
        return ranked


def load_bundle(version: ModelVersion) -> ModelBundle:
    with _LOCK:
        cached = _CACHE.get(version.pk)
    if cached is not None:
        return cached
    with _LOAD_LOCK:  # one load per process, not one per thread arriving at once
        with _LOCK:
            cached = _CACHE.get(version.pk)
        if cached is not None:
            return cached
        return _load(version)


def _load(version: ModelVersion) -> ModelBundle:
    with np.load(artifact_path(version, "ids.npz"), allow_pickle=False) as ids:
        item_ids, user_ids = ids["item_ids"], ids["user_ids"]
    model = None
    if version.kind == ModelKind.MF:
        model = mfengine.load(artifact_path(version, "model.npz"))
    content_path = artifact_path(version, "content.npz")
    bundle = ModelBundle(
        version_id=version.pk, kind=version.kind, model=model, item_ids=item_ids,
        user_ids=user_ids,
        popularity=PopularityRecommender.load(artifact_path(version, "popularity.npz")),
        content=ContentRecommender.load(content_path) if content_path.exists() else None,
        event_weights=dict(version.plan_revision.config["events"]),
        cutoff=version.dataset_version.cutoff.timestamp())
    with _LOCK:
        if len(_CACHE) >= _MAX_CACHED:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[version.pk] = bundle
    return bundle
