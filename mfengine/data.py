"""From raw interaction events to a training matrix.

`prepare_interactions` is a pure function over numpy arrays (no Django, no database) so the
training pipeline, the benchmarks and the tests build data set versions the same way:

1. events at or after the training cutoff are dropped (the cutoff is the point in time the data
   set represents; nothing "after" it may leak into training);
2. events older than the window (``window_days`` before the cutoff) are dropped;
3. negative event types (hide, dislike, ...) are set aside as a suppression list of
   (user, item) pairs and are never positives; by default they also remove that pair's positive
   events from the matrix;
4. events whose type has no weight are ignored; events on items outside a given catalogue are
   dropped;
5. caps: a user keeps only their ``max_events_per_user`` most recent events, an item only its
   ``max_events_per_item`` most recent events (caps count events, so a bot cannot dominate);
6. strength of an event = type weight (x value if ``use_values``) x recency decay
   ``exp(-ln 2 * age_days / half_life_days)`` with age measured from the cutoff, never "now";
7. strengths of the same (user, item) are summed, clipped at ``max_strength`` and optionally
   passed through log1p.

Rows and columns are the sorted unique external ids, so the same input always gives the same
mapping and the same content hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.ids import positions
from mfengine.report import to_plain

SECONDS_PER_DAY = 86400.0
# Elements per block where a whole-array temporary is avoided (hashing, id codes): 8 MB of int64.
_BLOCK = 1 << 20

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.5,
    "click": 1.0,
    "add_to_cart": 3.0,
    "watch_complete": 4.0,
    "purchase": 5.0,
    "rating": 1.0,
}
DEFAULT_NEGATIVE_TYPES: tuple[str, ...] = ("hide", "dislike")


@dataclass(frozen=True)
class PrepareConfig:
    """How events become matrix strengths. All fields are plain JSON-able values."""

    event_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS)
    )
    negative_event_types: Sequence[str] = DEFAULT_NEGATIVE_TYPES
    # Negatives remove that pair's positives: a user who hid an item has not endorsed it.
    negatives_remove_positives: bool = True
    # strength = weight * value (e.g. a rating or watch share) instead of weight alone.
    use_values: bool = False
    half_life_days: float | None = None
    window_days: float | None = None
    log1p: bool = False
    max_events_per_user: int | None = None
    max_events_per_item: int | None = None
    max_strength: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_weights"] = {str(k): float(v) for k, v in dict(self.event_weights).items()}
        d["negative_event_types"] = [str(t) for t in self.negative_event_types]
        return d


@dataclass
class PreparedData:
    """A training matrix plus everything needed to map it back to the tenant's ids."""

    matrix: sp.csr_matrix  # users x items, float32 strengths
    user_ids: np.ndarray  # row -> external user id (sorted)
    item_ids: np.ndarray  # column -> external item id (sorted)
    counts: dict[str, int]
    suppression_user_ids: np.ndarray  # external ids of (user, item) negative pairs
    suppression_item_ids: np.ndarray
    content_hash: str
    cutoff: int
    config: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def user_rows(self, external_ids: Any) -> np.ndarray:
        """Row index per external user id, -1 for unknown ids (vectorised)."""
        return _lookup(self.user_ids, external_ids)

    def item_columns(self, external_ids: Any) -> np.ndarray:
        """Column index per external item id, -1 for unknown ids (vectorised)."""
        return _lookup(self.item_ids, external_ids)

    @property
    def user_to_row(self) -> dict[Any, int]:
        return {to_plain(u): i for i, u in enumerate(self.user_ids)}

    @property
    def item_to_column(self) -> dict[Any, int]:
        return {to_plain(u): i for i, u in enumerate(self.item_ids)}

    def suppression_pairs(self) -> list[tuple[Any, Any]]:
        return [
            (to_plain(u), to_plain(i))
            for u, i in zip(self.suppression_user_ids, self.suppression_item_ids, strict=True)
        ]


def _as_ids(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.int64, copy=False)  # the caller's int64 ids, not a copy of them
    return arr


def _lookup(sorted_ids: np.ndarray, external_ids: Any) -> np.ndarray:
    """Row/column of each external id, -1 where absent (ids may be ints or strings)."""
    query = _as_ids(external_ids)
    if sorted_ids.dtype.kind in "iu" and query.dtype.kind in "iu":
        return positions(sorted_ids, query)
    if len(sorted_ids) == 0 or (sorted_ids.dtype.kind in "US") != (query.dtype.kind in "US"):
        return np.full(query.shape, -1, dtype=np.int64)
    # string ids: the same lookup as mfengine.ids.positions, on numpy strings
    pos = np.searchsorted(sorted_ids, query)
    pos_c = np.minimum(pos, len(sorted_ids) - 1)
    found = sorted_ids[pos_c] == query
    return np.where(found, pos_c, -1).astype(np.int64)


def _hash_ids(h: Any, ids: np.ndarray) -> None:
    if ids.dtype.kind in "US":
        # Joined UTF-8 so the hash does not depend on numpy's fixed-width padding.
        h.update(b"str:")
        h.update("\x1f".join(ids.tolist()).encode("utf-8"))
    else:
        h.update(b"int:")
        h.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update(b"|")


def _hash_blocks(h: Any, array: np.ndarray, dtype: Any) -> None:
    """``array`` as ``dtype`` a block at a time: the digest of the whole, with no copy of it."""
    flat = array.ravel()
    for start in range(0, len(flat), _BLOCK):
        h.update(np.ascontiguousarray(flat[start:start + _BLOCK], dtype=dtype))


def content_hash(
    matrix: sp.csr_matrix,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    suppression: tuple[np.ndarray, np.ndarray] | None = None,
) -> str:
    """sha256 over the CSR arrays, the shape and the id mappings (and suppression pairs)."""
    m = matrix.tocsr()
    m.sort_indices()
    h = hashlib.sha256()
    h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
    _hash_blocks(h, m.data, np.float32)
    _hash_blocks(h, m.indices, np.int64)
    _hash_blocks(h, m.indptr, np.int64)
    _hash_ids(h, user_ids)
    _hash_ids(h, item_ids)
    if suppression is not None:
        _hash_ids(h, suppression[0])
        _hash_ids(h, suppression[1])
    return h.hexdigest()


def _keep_most_recent(groups: np.ndarray, timestamps: np.ndarray, cap: int) -> np.ndarray:
    """Boolean mask keeping at most `cap` most recent events per group (ties: later index)."""
    n = len(groups)
    order = np.lexsort((-np.arange(n), -timestamps, groups))
    g_sorted = groups[order]
    starts = np.r_[0, np.flatnonzero(g_sorted[1:] != g_sorted[:-1]) + 1] if n else np.array([])
    run_start = np.zeros(n, dtype=np.int64)
    if n:
        run_start[starts] = starts
        run_start = np.maximum.accumulate(run_start)
    rank = np.arange(n) - run_start
    keep = np.zeros(n, dtype=bool)
    keep[order] = rank < cap
    return keep


@dataclass
class _Events:
    """The event arrays while they go through the steps: ``keep`` marks what survives and
    ``counts`` records what each step dropped. User and item codes index the sorted unique
    external ids, so codes follow id order. Per event only small integer codes are made: no
    copy of the caller's arrays, no weight or name per event (looked up by type code)."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray | None  # None: no values (strength is the type's weight)
    keep: np.ndarray
    counts: dict[str, int]
    type_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    type_weight: np.ndarray = field(default_factory=lambda: np.ones(1))  # NaN: no weight
    type_negative: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=bool))
    unique_users: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unique_items: np.ndarray = field(default_factory=lambda: np.zeros(0))
    user_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    item_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    def drop(self, key: str, mask: np.ndarray) -> None:
        """Drop the kept events in ``mask``, counted under ``key``."""
        self.counts[key] = int((self.keep & mask).sum())
        self.keep &= ~mask

    def pair_keys(self, at: np.ndarray) -> np.ndarray:
        """The (user, item) key of the events at positions ``at`` (int64: codes are int32)."""
        keys = self.user_codes[at].astype(np.int64)
        keys *= max(len(self.unique_items), 1)
        keys += self.item_codes[at]
        return keys


def _codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids, each id's position in them): np.unique's inverse, as int32 where
    it fits and computed a block at a time (np.unique's inverse costs several int64 arrays
    as long as the events)."""
    unique = np.unique(ids)
    codes = np.empty(len(ids), dtype=np.int32 if len(unique) < 2**31 else np.int64)
    for start in range(0, len(ids), _BLOCK):
        codes[start:start + _BLOCK] = np.searchsorted(unique, ids[start:start + _BLOCK])
    return unique, codes


def _read_events(
    user_ids: Any, item_ids: Any, timestamps: Any, values: Any, cutoff: int
) -> _Events:
    users, items = _as_ids(user_ids), _as_ids(item_ids)
    ts = np.asarray(timestamps, dtype=np.int64)
    n = len(users)
    if len(items) != n or len(ts) != n:
        raise ValueError("user_ids, item_ids and timestamps must have the same length")
    vals = None if values is None else np.asarray(values, np.float64)
    if vals is not None and len(vals) != n:
        raise ValueError("values must have one entry per event")
    events = _Events(users, items, ts, vals, np.ones(n, dtype=bool), {"events_in": n})
    # Integer codes once (sorted unique ids, so codes follow the sorted external ids).
    events.unique_users, events.user_codes = _codes(users)
    events.unique_items, events.item_codes = _codes(items)
    return events


def _drop_after_cutoff(events: _Events, cutoff: int) -> None:
    """Step 1: the cutoff is the point in time the data set represents."""
    events.drop("dropped_after_cutoff", events.timestamps >= cutoff)


def _type_codes(event_types: Any, names: Any, n: int) -> tuple[np.ndarray, list[str]]:
    """(a code per event, the type name of each code). With ``names``, ``event_types`` are
    already codes into it; else they are names, coded by their sorted unique values."""
    if event_types is None:
        return np.zeros(n, dtype=np.int8), ["rating"]  # every event alike, weight 1
    if names is not None:
        codes = np.asarray(event_types)
        names = [str(name) for name in names]
        if codes.dtype.kind not in "iu" or (len(codes) and (
                codes.min() < 0 or codes.max() >= len(names))):
            raise ValueError("event_types must be codes into event_type_names")
    else:
        unique_types, codes = np.unique(np.asarray(event_types).astype(str),
                                        return_inverse=True)
        names = unique_types.tolist()
    if len(codes) != n:
        raise ValueError("event_types must have one entry per event")
    return codes.ravel(), names


def _weigh_event_types(events: _Events, event_types: Any, names: Any,
                       cfg: PrepareConfig) -> None:
    """Weight (NaN: type without weight) and negative flag per type, and each event's type
    code into them."""
    events.type_codes, names = _type_codes(event_types, names, len(events.users))
    if event_types is None:
        return
    weights = {str(k): float(v) for k, v in dict(cfg.event_weights).items()}
    negative_types = {str(t) for t in cfg.negative_event_types}
    events.type_weight = np.array([weights.get(t, np.nan) for t in names], dtype=np.float64)
    events.type_negative = np.array([t in negative_types for t in names], dtype=bool)


def _set_aside_negatives(events: _Events) -> np.ndarray:
    """Step 3: negative events become suppression pairs (keys), never positives. The cutoff
    applies to them, the window does not (a hide stays meaningful)."""
    negative = events.type_negative[events.type_codes]
    negatives = np.flatnonzero(events.keep & negative)
    events.counts["negative_events"] = int(len(negatives))
    events.keep &= ~negative
    return np.unique(events.pair_keys(negatives))


def _drop_outside_window(events: _Events, cutoff: int, window_days: float | None) -> None:
    """Step 2: events older than ``window_days`` before the cutoff."""
    if window_days is None:
        events.counts["dropped_outside_window"] = 0
        return
    oldest = cutoff - float(window_days) * SECONDS_PER_DAY
    events.drop("dropped_outside_window", events.timestamps < oldest)


def _drop_unusable(events: _Events, use_values: bool) -> None:
    """Step 4: types without a weight; non-finite values when values are used."""
    events.drop("dropped_unknown_type", np.isnan(events.type_weight)[events.type_codes])
    if use_values and events.values is not None:
        events.drop("dropped_invalid_value", ~np.isfinite(events.values))
    else:
        events.counts["dropped_invalid_value"] = 0


def _drop_unknown_items(events: _Events, catalogue_item_ids: Any) -> np.ndarray | None:
    """Step 4: events on items outside the catalogue; returns the sorted catalogue."""
    if catalogue_item_ids is None:
        events.counts["dropped_unknown_item"] = 0
        return None
    catalogue = np.unique(_as_ids(catalogue_item_ids))
    known_code = _lookup(catalogue, events.unique_items) >= 0
    known = known_code[events.item_codes] if len(events.keep) else np.zeros(0, dtype=bool)
    events.drop("dropped_unknown_item", ~known)
    return catalogue


def _drop_suppressed_pairs(events: _Events, negative_keys: np.ndarray, enabled: bool) -> None:
    """Step 3: a user who hid an item has not endorsed it."""
    events.counts["dropped_suppressed_pair"] = 0
    if not (enabled and len(negative_keys)):
        return
    kept = np.flatnonzero(events.keep)  # only kept events can be dropped (and counted)
    hit = kept[np.isin(events.pair_keys(kept), negative_keys)]
    events.counts["dropped_suppressed_pair"] = int(len(hit))
    events.keep[hit] = False


def _apply_caps(events: _Events, cfg: PrepareConfig) -> None:
    """Step 5: caps count events, newest first, so a bot cannot dominate a user row or an
    item column. The item cap runs on what the user cap kept."""
    for key, codes, cap in (
        ("dropped_user_cap", events.user_codes, cfg.max_events_per_user),
        ("dropped_item_cap", events.item_codes, cfg.max_events_per_item),
    ):
        events.counts[key] = 0
        if cap is not None:
            kept = np.flatnonzero(events.keep)
            selected = _keep_most_recent(codes[kept], events.timestamps[kept], int(cap))
            events.counts[key] = int((~selected).sum())
            events.keep[kept[~selected]] = False


def _strengths(
    events: _Events, cutoff: int, cfg: PrepareConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 6: (user codes, item codes, strengths) of the kept events with a positive
    strength: type weight (x value) x recency decay measured from the cutoff."""
    keep = events.keep  # a mask, not positions: no int64 per event
    strength = events.type_weight[events.type_codes[keep]]
    if cfg.use_values and events.values is not None:
        strength *= events.values[keep]
    if cfg.half_life_days is not None:
        # In place, the same operations in the same order (the same floats) as
        # strength * exp(-ln 2 * age_days / half_life), without a temporary per operation.
        age = events.timestamps[keep]
        np.subtract(cutoff, age, out=age)
        decay = age.astype(np.float64)
        del age
        decay /= SECONDS_PER_DAY
        decay *= -np.log(2.0)
        decay /= float(cfg.half_life_days)
        np.exp(decay, out=decay)
        strength *= decay
        del decay
    positive = strength > 0
    n_positive = int(positive.sum())
    events.counts["dropped_nonpositive_strength"] = len(positive) - n_positive
    events.counts["events_kept"] = n_positive
    if n_positive < len(positive):
        keep[keep] = positive
        strength = strength[positive]
    return events.user_codes[keep], events.item_codes[keep], strength


def _used(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(the codes that occur, sorted; each code's rank among them): np.unique(codes,
    return_inverse=True) through a table as long as the unique ids, not a sort of the events."""
    present = np.zeros(n_codes, dtype=bool)
    present[codes] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present), rank.astype(np.int32)[codes]


def _build_matrix(
    events: _Events, cutoff: int, catalogue: np.ndarray | None, cfg: PrepareConfig
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Steps 6-7: (matrix, row ids, column ids); duplicates summed, clipped, optionally log1p.
    The per-event codes are let go as soon as the kept ones are taken, and the COO arrays
    (int32 rows and columns) once the CSR matrix holds them."""
    user_codes, item_codes, strength = _strengths(events, cutoff, cfg)
    events.user_codes = events.item_codes = events.keep = np.zeros(0, dtype=np.int32)
    used_users, rows = _used(user_codes, len(events.unique_users))
    del user_codes
    row_ids = events.unique_users[used_users]
    if catalogue is not None:
        col_ids = catalogue
        cols = _lookup(catalogue, events.unique_items).astype(np.int32)[item_codes]
    else:
        used_items, cols = _used(item_codes, len(events.unique_items))
        col_ids = events.unique_items[used_items]
    del item_codes
    shape = (len(row_ids), len(col_ids))
    # COO -> CSR sums duplicate (user, item) strengths.
    matrix = sp.csr_matrix((strength, (rows, cols)), shape=shape)
    del rows, cols, strength
    matrix.sum_duplicates()
    if cfg.max_strength is not None:
        np.minimum(matrix.data, float(cfg.max_strength), out=matrix.data)
    if cfg.log1p:
        np.log1p(matrix.data, out=matrix.data)
    # float32 values on the same index arrays (astype would copy those too).
    matrix = sp.csr_matrix((matrix.data.astype(np.float32), matrix.indices, matrix.indptr),
                           shape=shape)
    matrix.sort_indices()
    return matrix, row_ids, col_ids


def prepare_interactions(
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    *,
    cutoff: int,
    event_types: Any = None,
    values: Any = None,
    config: PrepareConfig | None = None,
    catalogue_item_ids: Any = None,
    event_type_names: Any = None,
) -> PreparedData:
    """Build a `PreparedData` from per-event arrays (the steps of the module docstring).

    user_ids / item_ids: external ids (ints or strings), one per event. timestamps: unix
    seconds. cutoff: unix seconds; only events strictly before it are used and decay ages are
    measured from it. event_types: type name per event (None: every event is "rating"-like with
    weight 1). values: optional per-event numbers used when ``config.use_values``.
    catalogue_item_ids: if given, every catalogue item gets a column (even without events, so
    new items can be served by content) and events on other items are dropped.
    event_type_names: if given, event_types are integer codes into it (a name per code), so
    no name per event needs to exist.
    """
    cfg = config or PrepareConfig()
    cutoff = int(cutoff)
    events = _read_events(user_ids, item_ids, timestamps, values, cutoff)
    _drop_after_cutoff(events, cutoff)
    _weigh_event_types(events, event_types, event_type_names, cfg)
    negative_keys = _set_aside_negatives(events)
    _drop_outside_window(events, cutoff, cfg.window_days)
    _drop_unusable(events, cfg.use_values)
    catalogue = _drop_unknown_items(events, catalogue_item_ids)
    _drop_suppressed_pairs(events, negative_keys, cfg.negatives_remove_positives)
    _apply_caps(events, cfg)
    matrix, row_ids, col_ids = _build_matrix(events, cutoff, catalogue, cfg)
    n_item_codes = max(len(events.unique_items), 1)
    suppressed_users = events.unique_users[negative_keys // n_item_codes]
    suppressed_items = events.unique_items[negative_keys % n_item_codes]
    counts = events.counts
    counts["n_users"], counts["n_items"] = matrix.shape
    counts["nnz"] = int(matrix.nnz)
    counts["suppression_pairs"] = int(len(suppressed_users))
    return PreparedData(
        matrix=matrix,
        user_ids=row_ids,
        item_ids=col_ids,
        counts=counts,
        suppression_user_ids=suppressed_users,
        suppression_item_ids=suppressed_items,
        content_hash=content_hash(
            matrix, row_ids, col_ids, (suppressed_users, suppressed_items)
        ),
        cutoff=cutoff,
        config=cfg.to_dict(),
    )
