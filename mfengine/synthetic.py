"""Seeded synthetic interaction data with a planted structure (tests, benchmarks, demo).

- item popularity follows a power law (Zipf-like, ``popularity_exponent`` 0.9 by default: higher
  is a more skewed catalogue) inside each category;
- user activity is heavy-tailed (log-normal), every user has at least one event;
- each user belongs to one taste cluster; clusters map one-to-one onto item categories and a
  user's events fall inside that category with probability ``in_cluster`` (0.8), otherwise
  anywhere by global popularity;
- timestamps are increasing over ``days`` days from ``start``;
- values are 1 per event, or ratings 1..5 (``ratings=True``), or repeat counts
  (``counts=True``: heavy-tailed, like plays of a song, larger when the item matches the
  user's taste).

Everything is vectorised: 2M events take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

_CATEGORY_NAMES = [
    "books", "electronics", "garden", "toys", "music", "sports", "kitchen", "fashion",
    "beauty", "films", "games", "travel",
]
_EVENT_TYPES = np.array(["click", "add_to_cart", "purchase", "watch_complete"], dtype=object)
_EVENT_SHARES = np.array([0.70, 0.12, 0.06, 0.12])
_ADJECTIVES = ["classic", "compact", "deluxe", "essential", "modern", "vintage", "smart", "eco"]


@dataclass
class SyntheticData:
    """Events (one entry per event) plus per-item metadata and the planted clusters."""

    user_ids: np.ndarray  # int64, one per event (0..n_users-1)
    item_ids: np.ndarray  # int64, one per event
    values: np.ndarray  # float32 strength per event (1.0), ratings 1..5 if ratings=True
    timestamps: np.ndarray  # int64 unix seconds, non-decreasing
    event_types: np.ndarray  # object array of str
    item_categories: np.ndarray  # object array of str, one per item
    item_titles: np.ndarray  # object array of str, one per item
    item_tags: list[list[str]]  # per item
    user_clusters: np.ndarray  # int64 planted taste cluster per user
    item_clusters: np.ndarray  # int64 cluster (= category index) per item
    n_users: int
    n_items: int

    def to_csr(self) -> sp.csr_matrix:
        """Users x items, values of repeated events summed, float32."""
        matrix = sp.csr_matrix(
            (self.values.astype(np.float32), (self.user_ids, self.item_ids)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        return matrix


def _category_name(index: int) -> str:
    if index < len(_CATEGORY_NAMES):
        return _CATEGORY_NAMES[index]
    return f"category-{index}"


def generate(
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 20000,
    n_clusters: int = 8,
    ratings: bool = False,
    seed: int = 0,
    start: int = 1_700_000_000,
    days: int = 180,
    in_cluster: float = 0.8,
    popularity_exponent: float = 0.9,
    counts: bool = False,
) -> SyntheticData:
    """Generate a seeded synthetic data set (see the module docstring)."""
    if min(n_users, n_items, n_clusters) < 1 or n_interactions < 0:
        raise ValueError("n_users, n_items and n_clusters must be >= 1, n_interactions >= 0")
    if ratings and counts:
        raise ValueError("choose ratings or counts, not both")
    rng = np.random.default_rng(seed)
    n_clusters = min(n_clusters, n_items)

    # items: cluster/category, power-law popularity (rank ** -1 on a shuffled rank)
    item_clusters = np.sort(rng.integers(0, n_clusters, n_items))
    item_clusters[:n_clusters] = np.arange(n_clusters)  # every cluster owns >= 1 item
    item_clusters = rng.permutation(item_clusters).astype(np.int64)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** popularity_exponent
    global_cdf = np.cumsum(popularity) / popularity.sum()

    # users: cluster and heavy-tailed activity
    user_clusters = rng.integers(0, n_clusters, n_users).astype(np.int64)
    activity = rng.lognormal(0.0, 1.0, n_users)
    first = np.arange(min(n_users, n_interactions), dtype=np.int64)
    rest = n_interactions - first.size
    extra = np.searchsorted(np.cumsum(activity) / activity.sum(), rng.random(rest), side="right")
    users = np.concatenate([first, np.minimum(extra, n_users - 1)])
    users = users[rng.permutation(users.size)]

    # items per event: inside the user's cluster with probability in_cluster
    items = np.empty(users.size, dtype=np.int64)
    inside = rng.random(users.size) < in_cluster
    event_cluster = user_clusters[users]
    for cluster in range(n_clusters):
        members = np.flatnonzero(item_clusters == cluster)
        cdf = np.cumsum(popularity[members])
        cdf /= cdf[-1]
        chosen = np.flatnonzero(inside & (event_cluster == cluster))
        picks = np.searchsorted(cdf, rng.random(chosen.size), side="right")
        items[chosen] = members[np.minimum(picks, members.size - 1)]
    outside = np.flatnonzero(~inside)
    picks = np.searchsorted(global_cdf, rng.random(outside.size), side="right")
    items[outside] = np.minimum(picks, n_items - 1)

    if ratings:
        # taste match, item quality and user leniency shape the rating
        quality = rng.normal(0.0, 0.5, n_items)
        leniency = rng.normal(0.0, 0.4, n_users)
        match = item_clusters[items] == event_cluster
        raw = 2.9 + 1.0 * match + quality[items] + leniency[users]
        raw += rng.normal(0.0, 0.6, users.size)
        values = np.clip(np.rint(raw), 1, 5).astype(np.float32)
    elif counts:
        match = item_clusters[items] == event_cluster
        values = np.ceil(rng.lognormal(0.8 * match, 1.0)).astype(np.float32)
    else:
        values = np.ones(users.size, dtype=np.float32)

    timestamps = np.sort(rng.integers(start, start + days * 86400, users.size)).astype(np.int64)
    event_types = _EVENT_TYPES[np.searchsorted(np.cumsum(_EVENT_SHARES), rng.random(users.size))]

    category_names = np.array([_category_name(c) for c in range(n_clusters)], dtype=object)
    item_categories = category_names[item_clusters]
    adjectives = rng.integers(0, len(_ADJECTIVES), n_items)
    item_titles = np.array(
        [
            f"{_ADJECTIVES[adjectives[i]].title()} {item_categories[i]} item {i}"
            for i in range(n_items)
        ],
        dtype=object,
    )
    tag_counts = rng.integers(1, 4, n_items)
    tag_choices = rng.integers(0, 5, (n_items, 3))
    item_tags = [
        sorted({f"{item_categories[i]}-{t}" for t in tag_choices[i, : tag_counts[i]]})
        for i in range(n_items)
    ]
    return SyntheticData(
        user_ids=users,
        item_ids=items,
        values=values,
        timestamps=timestamps,
        event_types=event_types,
        item_categories=item_categories,
        item_titles=item_titles,
        item_tags=item_tags,
        user_clusters=user_clusters,
        item_clusters=item_clusters,
        n_users=n_users,
        n_items=n_items,
    )
