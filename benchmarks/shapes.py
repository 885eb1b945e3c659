"""The data shapes the quality benchmarks measure on: ml-latest-small under both splits and
synthetic sets (mfengine.synthetic) of different density, popularity skew and value scale.

Each shape carries its train and test matrices (BENCHMARK.md protocol) and the training
period's events, so a tuner can carve its own validation split from them. ``role`` says
whether a shape may be used to choose a default ("choose") or only to confirm one
("confirm"): a default picked on one set's test split proves nothing about the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from benchmarks.common import movielens_dir
from mfengine.datasets import MovieLens, load_movielens
from mfengine.evaluation import global_time_split, temporal_split, temporal_split_mask
from mfengine.synthetic import generate


@dataclass
class Shape:
    name: str
    description: str
    role: str  # "choose" or "confirm"
    train: sp.csr_matrix
    test: sp.csr_matrix
    # The training period's events (row, column, unix seconds, value) for a tuner.
    events: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    validation: str  # the tuner's split: "temporal" or "global", mirroring the test split
    positive_threshold: float | None
    binary: bool  # train on 1 per (user, item) or on summed values (counts)


def _temporal(name: str, description: str, role: str, users: np.ndarray, items: np.ndarray,
              ts: np.ndarray, vals: np.ndarray, shape: tuple[int, int],
              threshold: float | None, binary: bool) -> Shape:
    train, test = temporal_split(users, items, ts, vals, shape=shape,
                                 positive_threshold=threshold, binary=binary)
    keep = ~temporal_split_mask(users, ts, 0.2, items)
    return Shape(name, description, role, train, test,
                 (users[keep], items[keep], ts[keep], vals[keep]), "temporal", threshold, binary)


def _encoded(ml: MovieLens) -> tuple:
    """(rows, columns, unix seconds, values, matrix shape) of ml-latest-small's ratings."""
    users, items, _, item_ids = ml.encode()
    return (users, items, ml.timestamps.astype(np.int64), ml.values.astype(np.float64),
            (int(users.max()) + 1, len(item_ids)))


def movielens_temporal(ml: MovieLens | None = None) -> Shape:
    """ml-latest-small under BENCHMARK.md's per-user temporal split (each user's last 20% of
    ratings are test, test positives rating >= 4, train binary): the quality benchmark's
    "ml-temporal", and the split the cold-start and Spark benchmarks measure on. Columns are
    ``ml.encode()``'s items."""
    ml = load_movielens(movielens_dir()) if ml is None else ml
    return _temporal(
        "ml-temporal", "ml-latest-small, per-user temporal split (last 20% of each user's "
        "ratings; positives rating >= 4)", "choose", *_encoded(ml), 4.0, True)


def movielens_global(ml: MovieLens, quantile: float, name: str) -> Shape:
    """ml-latest-small under a global cutoff at the ``quantile`` of its rating times: train
    before it, test positives (rating >= 4) after it; the tuner's validation is carved from
    the training period by the same protocol."""
    users, items, ts, vals, shape = _encoded(ml)
    cutoff = int(np.quantile(ts, quantile))
    train, test = global_time_split(users, items, ts, vals, cutoff=cutoff, shape=shape,
                                    positive_threshold=4.0)
    before = ts < cutoff
    return Shape(
        name, f"ml-latest-small, global cutoff (train before {cutoff}, the {quantile:.0%} "
        "time quantile; positives rating >= 4)", "confirm", train, test,
        (users[before], items[before], ts[before], vals[before]), "global", 4.0, True)


def movielens_shapes() -> list[Shape]:
    ml = load_movielens(movielens_dir())
    return [movielens_temporal(ml), movielens_global(ml, 0.8, "ml-global")]


@dataclass
class PooledShape:
    """Shapes measured one by one and reported over all their test users together: a split
    with too few test users to tell implicit and mfengine apart, repeated at neighbouring
    cutoffs."""

    name: str
    description: str
    parts: list[Shape]

    @property
    def validation(self) -> str:
        return self.parts[0].validation


#: ml-global's split at the neighbouring time quantiles too; the 80% part is ml-global itself.
GLOBAL_POOLED_QUANTILES = {"ml-global-70": 0.7, "ml-global": 0.8, "ml-global-90": 0.9}


def pooled_shapes() -> list[PooledShape]:
    ml = load_movielens(movielens_dir())
    return [PooledShape(
        "ml-global-pooled", "ml-global's protocol at the 70%, 80% and 90% time-quantile "
        "cutoffs, over all their test users",
        [movielens_global(ml, quantile, name)
         for name, quantile in GLOBAL_POOLED_QUANTILES.items()])]


# name, role, generator arguments, what it stands for
SYNTHETIC = (
    ("syn-sparse-skewed", "choose",
     {"n_users": 20_000, "n_items": 8_000, "n_interactions": 200_000, "n_clusters": 24,
      "popularity_exponent": 1.2},
     "sparse (0.1% dense), steep popularity (exponent 1.2), binary"),
    ("syn-dense-flat", "choose",
     {"n_users": 2_000, "n_items": 1_000, "n_interactions": 200_000, "n_clusters": 8,
      "popularity_exponent": 0.5},
     "dense (~8%), flat popularity (exponent 0.5), binary"),
    ("syn-counts", "confirm",
     {"n_users": 6_000, "n_items": 4_000, "n_interactions": 150_000, "n_clusters": 16,
      "counts": True},
     "repeat counts (mean ~4, up to ~100; trained on the summed counts), exponent 0.9"),
    ("syn-ratings", "confirm",
     {"n_users": 4_000, "n_items": 3_000, "n_interactions": 150_000, "n_clusters": 12,
      "popularity_exponent": 1.0, "ratings": True},
     "ratings 1..5 (positives >= 4), exponent 1.0"),
)


def synthetic_shapes(seed: int = 0) -> list[Shape]:
    shapes = []
    for name, role, arguments, what in SYNTHETIC:
        data = generate(seed=seed, **arguments)
        threshold = 4.0 if arguments.get("ratings") else None
        binary = not arguments.get("counts")
        description = (f"synthetic {arguments['n_users']:,} users x {arguments['n_items']:,} "
                       f"items, {arguments['n_interactions']:,} events: {what}; per-user "
                       "temporal split")
        shapes.append(_temporal(
            name, description, role, data.user_ids, data.item_ids, data.timestamps,
            data.values.astype(np.float64), (data.n_users, data.n_items), threshold, binary))
    return shapes


def all_shapes(seed: int = 0) -> list[Shape]:
    return movielens_shapes() + synthetic_shapes(seed)
