"""Exploration: a share of a list's slots reserved for new items, so that items without
events get shown and learn from their first reactions (plan option `serving.exploration`:
{share, max_item_age_days}).

Eligible are the active version's cold items (placed by their content after it was trained,
registry.cold) created at most `max_item_age_days` ago; they pass the rules like every other
candidate. The number of slots is share x k, its fraction drawn at random (5% of 10 slots:
one slot in every other list). A user with a vector gets the eligible items that score best
with it (their vectors placed by content): benchmarks/cold.py measured recall@20 of new
items 0.0081 against 0.0031 for items drawn at random on MovieLens with one slot, 0.554
against 0.520 on a synthetic shop, and less taken from the user's other items; without a
vector they are drawn at random. Where they go in the list is drawn too, from a generator
seeded by the recommendation id: the same id gives the same list."""

from __future__ import annotations

import time
import uuid

import numpy as np

from mfplatform.registry.models import ModelVersion
from mfplatform.registry.vectors import partition_name, vector_array
from mfplatform.serving.cache import serving_cache
from mfplatform.serving.items import prepared_cursor
from mfplatform.serving.selector import Selector
from mfplatform.training.models import TrainingPlan

SOURCE = "exploration"
# How long a process keeps a version's eligible items (and another plan's serving options
# than the active version's, which the request state reads): a new item applies within this.
REFRESH_SECONDS = 30


def exploration_options(version: ModelVersion | None, stored: dict | None = None,
                        stored_for: ModelVersion | None = None) -> dict | None:
    """The serving plan's current `serving.exploration` ({share, max_item_age_days}), None
    when off (a plan change applies without a new version). `stored` are the options the
    request state read for the version `stored_for` (the active one): used when `version`
    belongs to the same plan. Another plan's (an experiment variant's version) are read
    through the process's cache, within REFRESH_SECONDS of a change."""
    if version is None:
        return None
    if stored_for is not None and stored_for.plan_id == version.plan_id:
        options = stored
    else:
        def load():
            config = (TrainingPlan.objects.filter(pk=version.plan_id)
                      .values_list("config", flat=True).first()) or {}
            return (config.get("serving") or {}).get("exploration")

        options = _cached(("exploration-options", version.plan_id), load, 256)
    return options if options and options.get("share", 0) > 0 else None


def generator(recommendation_id: uuid.UUID) -> np.random.Generator:
    return np.random.default_rng(recommendation_id.int)


def reserved_slots(options: dict, k: int, rng: np.random.Generator) -> int:
    """share x k slots, the fraction rounded up with its probability."""
    expected = float(options["share"]) * k
    slots = int(expected)
    if rng.random() < expected - slots:
        slots += 1
    return min(slots, k)


def explore(selector: Selector, version: ModelVersion, options: dict, slots: int,
            rng: np.random.Generator, query: np.ndarray | None = None) -> None:
    """Fill up to `slots` more places of the selector with eligible new items, best by
    `query` (the user's vector as the index searches with it) or, without one, drawn at
    random; each put at a random place of the list."""
    eligible, vectors = eligible_items(version, float(options["max_item_age_days"]))
    if not slots or not eligible.size:
        return
    if query is not None:
        scores = vectors @ np.asarray(query, dtype=np.float32)
        best = np.argsort(-scores, kind="stable")
        order, scores = eligible[best], scores[best]
    else:
        order = rng.permutation(eligible)
        scores = np.zeros(order.size)
    before = len(selector.picks)
    selector.k, wanted = before + slots, selector.k
    try:
        selector.offer(order, scores, SOURCE, _reason)
    finally:
        selector.k = wanted
    explored = selector.picks[before:]
    del selector.picks[before:]
    for pick in explored:
        selector.picks.insert(int(rng.integers(0, len(selector.picks) + 1)), pick)


def eligible_items(version: ModelVersion, max_age_days: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(pks, float32 vectors) of the version's cold items created within `max_age_days`,
    newest first."""

    def load():
        dims = int(version.dimensions)
        with prepared_cursor() as cursor:
            cursor.execute(
                f"SELECT v.item_id, v.embedding::vector({dims}) "
                f"FROM {partition_name('item', version.pk)} v "
                f"JOIN catalog_item i ON i.id = v.item_id WHERE v.cold "
                f"AND i.created_at >= now() - make_interval(secs => %(secs)s) "
                f"ORDER BY i.created_at DESC, v.item_id LIMIT 10000",
                {"secs": max_age_days * 86400.0})
            rows = cursor.fetchall()
        pks = np.array([row[0] for row in rows], dtype=np.int64)
        vectors = np.array([vector_array(row[1]) for row in rows], dtype=np.float32).reshape(
            len(rows), dims)
        return pks, vectors

    return _cached(("exploration-items", version.pk, max_age_days), load, None)


def _cached(key, load, size: int | None):
    cache, now = serving_cache(), time.monotonic()
    entry = cache.get(key)
    if entry is not None and entry[0] > now:
        return entry[1]
    value = load()
    nbytes = size if size is not None else 128 + sum(int(v.nbytes) for v in value)
    cache.put(key, (now + REFRESH_SECONDS, value), nbytes)
    return value


def _reason(_item) -> str:
    return "new in the catalogue: shown to learn who likes it"


class Exploring:
    """One request's exploration: its slots are held back from the model's candidates
    (`start`) and filled with new items before the fallbacks (`finish`)."""

    def __init__(self, version: ModelVersion | None = None, options: dict | None = None,
                 slots: int = 0, rng: np.random.Generator | None = None, bundle=None):
        self.version, self.options, self.slots, self.rng = version, options, slots, rng
        self.bundle = bundle

    @classmethod
    def start(cls, version: ModelVersion | None, bundle, selector: Selector,
              recommendation_id: uuid.UUID, stored: dict | None = None,
              stored_for: ModelVersion | None = None) -> Exploring:
        """`stored`: the options the request state read for `stored_for` (its version)."""
        # New items have vectors only in a factor model's partition (not a fallback version's).
        factor_model = bundle is not None and bundle.model is not None
        options = (exploration_options(version, stored, stored_for) if factor_model
                   else None)
        if options is None:
            return cls()
        rng = generator(recommendation_id)
        slots = reserved_slots(options, selector.k, rng)
        selector.k -= slots
        return cls(version, options, slots, rng, bundle)

    def finish(self, selector: Selector, vector: np.ndarray | None = None) -> None:
        """`vector`: the user's, when the request has one (the new items are ranked by it)."""
        if not self.slots:
            return
        selector.k += self.slots
        query = None if vector is None else self.bundle.model.user_vectors(vector)[0]
        explore(selector, self.version, self.options, self.slots, self.rng, query)
