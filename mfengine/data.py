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

SECONDS_PER_DAY = 86400.0

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
        return {_py(u): i for i, u in enumerate(self.user_ids)}

    @property
    def item_to_column(self) -> dict[Any, int]:
        return {_py(u): i for i, u in enumerate(self.item_ids)}

    def suppression_pairs(self) -> list[tuple[Any, Any]]:
        return [
            (_py(u), _py(i))
            for u, i in zip(self.suppression_user_ids, self.suppression_item_ids, strict=True)
        ]


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _as_ids(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    return arr


def _lookup(sorted_ids: np.ndarray, external_ids: Any) -> np.ndarray:
    query = _as_ids(external_ids)
    if len(sorted_ids) == 0:
        return np.full(query.shape, -1, dtype=np.int64)
    if (sorted_ids.dtype.kind in "US") != (query.dtype.kind in "US"):
        return np.full(query.shape, -1, dtype=np.int64)
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
    h.update(np.ascontiguousarray(m.data, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(m.indices, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(m.indptr, dtype=np.int64).tobytes())
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
) -> PreparedData:
    """Build a `PreparedData` from per-event arrays.

    user_ids / item_ids: external ids (ints or strings), one per event. timestamps: unix
    seconds. cutoff: unix seconds; only events strictly before it are used and decay ages are
    measured from it. event_types: type name per event (None: every event is "rating"-like with
    weight 1). values: optional per-event numbers used when ``config.use_values``.
    catalogue_item_ids: if given, every catalogue item gets a column (even without events, so
    new items can be served by content) and events on other items are dropped.
    """
    cfg = config or PrepareConfig()
    users = _as_ids(user_ids)
    items = _as_ids(item_ids)
    ts = np.asarray(timestamps, dtype=np.int64)
    n = len(users)
    if len(items) != n or len(ts) != n:
        raise ValueError("user_ids, item_ids and timestamps must have the same length")
    vals = np.ones(n, dtype=np.float64) if values is None else np.asarray(values, np.float64)
    if len(vals) != n:
        raise ValueError("values must have one entry per event")
    cutoff = int(cutoff)

    counts: dict[str, int] = {"events_in": n}
    keep = ts < cutoff
    counts["dropped_after_cutoff"] = int(n - keep.sum())

    # Weight and negative flag per event, via the unique type names (vectorised).
    if event_types is None:
        weight = np.ones(n)
        negative = np.zeros(n, dtype=bool)
    else:
        types = np.asarray(event_types).astype(str)
        if len(types) != n:
            raise ValueError("event_types must have one entry per event")
        uniq, inv = np.unique(types, return_inverse=True)
        wmap = {str(k): float(v) for k, v in dict(cfg.event_weights).items()}
        negset = {str(t) for t in cfg.negative_event_types}
        w_u = np.array([wmap.get(t, np.nan) for t in uniq], dtype=np.float64)
        neg_u = np.array([t in negset for t in uniq], dtype=bool)
        weight = w_u[inv] if n else np.zeros(0)
        negative = neg_u[inv] if n else np.zeros(0, dtype=bool)

    # Integer codes once (np.unique sorts, so codes follow the sorted external ids).
    uniq_users, ucode = np.unique(users, return_inverse=True)
    uniq_items, icode = np.unique(items, return_inverse=True)
    ucode, icode = ucode.ravel().astype(np.int64), icode.ravel().astype(np.int64)
    n_item_codes = max(len(uniq_items), 1)

    # Negatives: cutoff applies, the window does not (a hide stays meaningful).
    neg_mask = keep & negative
    counts["negative_events"] = int(neg_mask.sum())
    neg_keys = np.unique(ucode[neg_mask] * n_item_codes + icode[neg_mask])
    sup_u = uniq_users[neg_keys // n_item_codes]
    sup_i = uniq_items[neg_keys % n_item_codes]
    keep &= ~negative

    if cfg.window_days is not None:
        in_window = ts >= cutoff - float(cfg.window_days) * SECONDS_PER_DAY
        counts["dropped_outside_window"] = int((keep & ~in_window).sum())
        keep &= in_window
    else:
        counts["dropped_outside_window"] = 0

    unknown_type = np.isnan(weight)
    counts["dropped_unknown_type"] = int((keep & unknown_type).sum())
    keep &= ~unknown_type

    invalid = ~np.isfinite(vals) if cfg.use_values else np.zeros(n, dtype=bool)
    counts["dropped_invalid_value"] = int((keep & invalid).sum())
    keep &= ~invalid

    if catalogue_item_ids is not None:
        catalogue = np.unique(_as_ids(catalogue_item_ids))
        known_code = _lookup(catalogue, uniq_items) >= 0
        known = known_code[icode] if n else np.zeros(0, dtype=bool)
        counts["dropped_unknown_item"] = int((keep & ~known).sum())
        keep &= known
    else:
        catalogue = None
        counts["dropped_unknown_item"] = 0

    if cfg.negatives_remove_positives and len(neg_keys):
        hidden = keep & np.isin(ucode * n_item_codes + icode, neg_keys)
        counts["dropped_suppressed_pair"] = int(hidden.sum())
        keep &= ~hidden
    else:
        counts["dropped_suppressed_pair"] = 0

    # Caps count events, newest first, so a bot cannot dominate a user row or an item column.
    # The item cap runs on what the user cap kept.
    for key, codes, cap in (
        ("dropped_user_cap", ucode, cfg.max_events_per_user),
        ("dropped_item_cap", icode, cfg.max_events_per_item),
    ):
        if cap is not None:
            idx = np.flatnonzero(keep)
            sel = _keep_most_recent(codes[idx], ts[idx], int(cap))
            counts[key] = int((~sel).sum())
            keep[idx[~sel]] = False
        else:
            counts[key] = 0

    idx = np.flatnonzero(keep)
    u_k, i_k, t_k = ucode[idx], icode[idx], ts[idx]
    strength = weight[idx] * (vals[idx] if cfg.use_values else 1.0)
    if cfg.half_life_days is not None:
        age_days = (cutoff - t_k).astype(np.float64) / SECONDS_PER_DAY
        strength = strength * np.exp(-np.log(2.0) * age_days / float(cfg.half_life_days))

    nonpos = ~(strength > 0)
    counts["dropped_nonpositive_strength"] = int(nonpos.sum())
    u_k, i_k, strength = u_k[~nonpos], i_k[~nonpos], strength[~nonpos]
    counts["events_kept"] = int(len(u_k))

    used_users, rows = np.unique(u_k, return_inverse=True)
    row_ids = uniq_users[used_users]
    if catalogue is not None:
        col_ids = catalogue
        cols = _lookup(catalogue, uniq_items[i_k])
    else:
        used_items, cols = np.unique(i_k, return_inverse=True)
        col_ids = uniq_items[used_items]
    shape = (len(row_ids), len(col_ids))
    # COO -> CSR sums duplicate (user, item) strengths.
    matrix = sp.csr_matrix((strength, (rows.ravel(), np.asarray(cols).ravel())), shape=shape)
    matrix.sum_duplicates()
    if cfg.max_strength is not None:
        np.minimum(matrix.data, float(cfg.max_strength), out=matrix.data)
    if cfg.log1p:
        np.log1p(matrix.data, out=matrix.data)
    matrix = matrix.astype(np.float32)
    matrix.sort_indices()
    counts["n_users"], counts["n_items"] = shape
    counts["nnz"] = int(matrix.nnz)
    counts["suppression_pairs"] = int(len(sup_u))

    return PreparedData(
        matrix=matrix,
        user_ids=row_ids,
        item_ids=col_ids,
        counts=counts,
        suppression_user_ids=sup_u,
        suppression_item_ids=sup_i,
        content_hash=content_hash(matrix, row_ids, col_ids, (sup_u, sup_i)),
        cutoff=cutoff,
        config=cfg.to_dict(),
    )
