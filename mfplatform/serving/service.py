"""Recommendations for one user: vector -> pgvector candidates -> rules -> fallback chain.

    user vector: the model's vector for the user, folded in again from their events when they
    have events newer than the model (or no vector), blended with the session's items;
    candidates: the active version's HNSW index over item vectors (inner product), fetched in
    growing batches until k items pass the rules or the catalogue is exhausted;
    fallbacks: content-based (history or session), editorial picks, popularity.
Every item carries its source and, on request, a reason.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import psycopg
import scipy.sparse as sp
from django.conf import settings
from django.db import connection
from django.utils import timezone

from mfengine.baselines import item_tokens, top_n
from mfplatform.catalog.models import EndUser, Item
from mfplatform.registry.models import ModelKind, ModelVersion
from mfplatform.registry.vectors import nearest_items, raw_connection
from mfplatform.serving import metrics
from mfplatform.serving.bundle import ModelBundle, load_bundle
from mfplatform.serving.models import EditorialPick, EligibilityRule, Impression
from mfplatform.serving.rules import (
    DEFAULT_KINDS,
    CategoryFilter,
    ItemInfo,
    Rule,
    RuleContext,
    make_rule,
)
from tenants.models import Tenant

log = logging.getLogger(__name__)

MAX_K = 1000
HISTORY_LIMIT = 500
_ITEM_COLUMNS = ("id", "external_id", "title", "category", "attributes", "is_available",
                 "is_placeholder", "banned_at", "deleted_at")


class ServingError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Pick:
    item: ItemInfo
    score: float
    source: str
    reason: str | None = None


@dataclass
class Request:
    k: int = 10
    recent_items: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    category: str | None = None
    explain: bool = False
    precomputed: bool = False


# -- lookups ------------------------------------------------------------------------------------

_ITEMS_SQL = (f"SELECT {', '.join(_ITEM_COLUMNS)} FROM catalog_item "
              f"WHERE tenant_id = %(tenant)s AND id = ANY(%(ids)s::bigint[])")


def load_items(tenant: Tenant, pks: Iterable[int]) -> dict[int, ItemInfo]:
    """Catalogue rows by primary key, as rules see them (fallbacks load hundreds a request:
    a prepared statement, and attributes left as JSON text until a rule reads them)."""
    pks = [int(p) for p in pks]
    if not pks:
        return {}
    with _prepared_cursor() as cursor:
        cursor.execute(_ITEMS_SQL, {"tenant": tenant.pk,
                                    "ids": "{" + ",".join(map(str, pks)) + "}"}, prepare=True)
        return {row[0]: ItemInfo(*row) for row in cursor.fetchall()}


def items_by_external_id(tenant: Tenant, external_ids: Iterable[str]) -> dict[str, int]:
    ids = [e for e in external_ids if e]
    if not ids:
        return {}
    return dict(Item.objects.filter(tenant=tenant, external_id__in=ids)
                .values_list("external_id", "id"))


def tenant_rules(tenant: Tenant, extra: list[Rule] = (),
                 configured: list[tuple[str, str, dict, bool]] | None = None) -> list[Rule]:
    """The default rules, replaced or disabled by the tenant's own of the same kind/name.
    `configured`: the tenant's (name, kind, params, enabled) when already read."""
    if configured is None:
        configured = list(EligibilityRule.objects.filter(tenant=tenant)
                          .values_list("name", "kind", "params", "enabled"))
    taken = {kind for _n, kind, _p, _e in configured} | {name for name, *_ in configured}
    rules = [make_rule(kind) for kind in DEFAULT_KINDS if kind not in taken]
    rules += [make_rule(kind, params, name=name)
              for name, kind, params, enabled in configured if enabled]
    return rules + list(extra)


@dataclass
class RequestState:
    version: ModelVersion | None
    user: EndUser | None
    history: list[tuple[int, str, float]]  # (item pk, event type name, unix time), newest first
    suppressed: set[int]
    rules: list[tuple[str, str, dict, bool]]


_VERSIONS: dict[int, ModelVersion] = {}

_STATE_SQL = f"""
WITH u AS (SELECT id, consent FROM catalog_enduser
           WHERE tenant_id = %(tenant)s AND external_id = %(user)s)
SELECT
  (SELECT mv.id FROM registry_modelversion mv
     JOIN training_trainingplan p ON p.id = mv.plan_id
    WHERE mv.tenant_id = %(tenant)s AND p.is_serving AND mv.status = 'active'
    ORDER BY mv.id LIMIT 1),
  (SELECT id FROM u), (SELECT consent FROM u),
  (SELECT coalesce(json_agg(json_build_array(h.item_id, h.name, h.ts) ORDER BY h.ts DESC),
                   '[]')
     FROM (SELECT e.item_id, t.name, extract(epoch FROM e.timestamp)::float8 AS ts
             FROM catalog_event e JOIN catalog_eventtype t ON t.id = e.event_type_id
            WHERE e.user_id = (SELECT id FROM u) AND (SELECT consent FROM u)
              AND t.kind <> 'policy'
            ORDER BY e.timestamp DESC LIMIT {HISTORY_LIMIT}) h),
  (SELECT coalesce(array_agg(item_id), '{{}}') FROM catalog_suppression
    WHERE user_id = (SELECT id FROM u)),
  (SELECT coalesce(json_agg(json_build_array(r.name, r.kind, r.params, r.enabled)
                            ORDER BY r."order", r.id), '[]')
     FROM serving_eligibilityrule r WHERE r.tenant_id = %(tenant)s)
"""


def _prepared_cursor() -> psycopg.Cursor:
    """A cursor that binds parameters on the server, so that the statements run on every
    request are parsed and planned once per database session (`prepare=True`); Django's
    cursors bind on the client, which sends new text, so a new plan, every time."""
    return psycopg.Cursor(raw_connection())


def request_state(tenant: Tenant, user_external_id: str | None) -> RequestState:
    """The active version, the user, their history and suppressions and the tenant's rules in
    one round trip (every table is also behind row-level security)."""
    with _prepared_cursor() as cursor:
        cursor.execute(_STATE_SQL, {"tenant": tenant.pk, "user": user_external_id or ""},
                       prepare=True)
        version_id, user_id, consent, history, suppressed, rules = cursor.fetchone()
    version = None
    if version_id is not None:
        version = _VERSIONS.get(version_id)
        if version is None:  # what serving reads of a version never changes: cache it
            version = (ModelVersion.objects.filter(tenant=tenant, pk=version_id)
                       .select_related("plan_revision", "dataset_version").get())
            _VERSIONS[version_id] = version
    user = None
    if user_id is not None and user_external_id:
        user = EndUser(pk=user_id, tenant=tenant, external_id=user_external_id,
                       consent=consent)
    return RequestState(
        version=version, user=user,
        history=[(int(i), name, float(ts)) for i, name, ts in _json(history)],
        suppressed=set(suppressed or ()),
        rules=[(name, kind, params, enabled) for name, kind, params, enabled in _json(rules)])


def _json(value):
    import json

    return json.loads(value) if isinstance(value, str | bytes) else value


def _bundle(version: ModelVersion | None) -> ModelBundle | None:
    """The active version's model files, or None when they cannot be read: serving goes on
    with the fallbacks that need no model (editorial picks, recent popularity) rather than
    failing every request of the tenant."""
    if version is None:
        return None
    try:
        return load_bundle(version)
    except (OSError, ValueError, KeyError) as exc:
        log.error("model v%s of tenant %s unreadable, serving without it: %s",
                  version.version, version.tenant_id, exc)
        return None


# -- the user vector ----------------------------------------------------------------------------

def user_vector(bundle: ModelBundle, user: EndUser | None,
                history: list[tuple[int, str, float]], session_pks: list[int]
                ) -> np.ndarray | None:
    model = bundle.model
    if model is None:
        return None
    vector = None
    if user is not None:
        row = bundle.row(user.pk)
        if row >= 0 and not _newer_than_model(bundle, history):
            vector = model.user_factors_[row]
        elif history:  # events the model has not seen, or no vector: fold in from history
            vector = _fold_in(bundle, [(i, bundle.event_weights.get(t, 0.0))
                                       for i, t, _ts in history])
    if session_pks:
        session = _fold_in(bundle, [(pk, 1.0) for pk in session_pks])
        if session is not None:
            weight = settings.SERVING_SESSION_WEIGHT
            vector = session if vector is None else (1 - weight) * vector + weight * session
    return vector


def _newer_than_model(bundle: ModelBundle, history: list[tuple[int, str, float]]) -> bool:
    """Whether the user has events the model has not seen (history is newest first)."""
    return bool(history) and history[0][2] >= bundle.cutoff


def _fold_in(bundle: ModelBundle, weighted: list[tuple[int, float]]) -> np.ndarray | None:
    pairs = [(pk, w) for pk, w in weighted if w > 0]
    if not pairs:
        return None
    columns = bundle.columns([pk for pk, _ in pairs])
    known = columns >= 0
    if not known.any():
        return None
    strengths = np.array([w for _, w in pairs], dtype=np.float32)[known]
    return bundle.model.fold_in(columns[known], strengths)


# -- candidates and rules -----------------------------------------------------------------------

class Selector:
    """Accepts candidates in order while they pass every rule and are not yet taken."""

    def __init__(self, tenant, rules: list[Rule], context: RuleContext, k: int,
                 excluded: set[int]):
        self.tenant, self.rules, self.context, self.k = tenant, rules, context, k
        self.excluded = set(excluded)
        self.picks: list[Pick] = []
        self.filtered: dict[str, int] = {}
        for rule in rules:
            rule.prepare(context)

    @property
    def full(self) -> bool:
        return len(self.picks) >= self.k

    def offer(self, pks, scores, source: str, reason=None) -> None:
        """Candidates best first (item pks and their scores). Item rows are loaded a chunk at
        a time, each twice the one before: offering a whole catalogue costs what is looked at
        before `k` items are accepted, in a handful of queries even when the rules turn most
        of it away (say, a category capped at 4 items)."""
        pks = np.asarray(pks, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        start, chunk = 0, max(4 * self.k, 100)
        while start < len(pks) and not self.full:
            part = slice(start, start + chunk)
            self._offer_chunk([(pk, score) for pk, score in zip(
                pks[part].tolist(), scores[part].tolist(), strict=True)
                if pk not in self.excluded], source, reason)
            start += chunk
            chunk = min(2 * chunk, 10_000)

    def _offer_chunk(self, fresh: list[tuple[int, float]], source: str, reason) -> None:
        infos = load_items(self.tenant, [pk for pk, _ in fresh])
        for pk, score in fresh:
            if self.full:
                return
            self.excluded.add(pk)
            item = infos.get(pk)
            if item is not None:
                self._consider(item, score, source, reason)

    def offer_items(self, scored: list[tuple[ItemInfo, float]], source: str, reason=None
                    ) -> None:
        """Like `offer`, with the item rows already loaded (the index search joins them)."""
        for item, score in scored:
            if self.full:
                return
            if item.id in self.excluded:
                continue
            self.excluded.add(item.id)
            self._consider(item, score, source, reason)

    def _consider(self, item: ItemInfo, score: float, source: str, reason) -> None:
        failed = next((r for r in self.rules if not r.allows(item, self.context)), None)
        if failed is not None:
            self.filtered[failed.name] = self.filtered.get(failed.name, 0) + 1
            return
        self.picks.append(Pick(item, float(score), source, reason(item) if reason else None))
        counts = self.context.category_counts
        counts[item.category] = counts.get(item.category, 0) + 1


EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
EF_FACTOR = 1.0  # ef_search per row asked for
_PGVECTOR_VERSION: dict[str, tuple[int, ...]] = {}


def pgvector_version() -> tuple[int, ...]:
    """The server's pgvector version, asked once per process and database."""
    name = connection.settings_dict["NAME"]
    if name not in _PGVECTOR_VERSION:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        _PGVECTOR_VERSION[name] = tuple(int(p) for p in (row[0] if row else "0").split(".")
                                        if p.isdigit())
    return _PGVECTOR_VERSION[name]


def _search_settings(ef_search: int) -> None:
    """hnsw.ef_search (and, on pgvector >= 0.8, iterative index scans) for the next search.
    Requests run in autocommit, where SET LOCAL does nothing: outside a transaction the
    setting is made for the session and remembered on the connection, so it costs a round
    trip only when it changes; inside one it is made transaction-local every time."""
    iterative = pgvector_version() >= (0, 8)
    connection.ensure_connection()
    raw = connection.connection
    local = connection.in_atomic_block
    if not local and getattr(raw, "_mf_ef_search", None) == ef_search:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, %s)" + (
            ", set_config('hnsw.iterative_scan', 'relaxed_order', %s)" if iterative else ""),
            [str(ef_search), local] + ([local] if iterative else []))
    raw._mf_ef_search = None if local else ef_search


def search_ef(limit: int) -> int:
    """The hnsw.ef_search serving uses for `limit` rows (pgvector < 0.8 returns at most
    ef_search rows; a wider search also finds the true top rows more often)."""
    return min(max(int(limit * EF_FACTOR), 40), EF_SEARCH_MAX)


def index_search(version: ModelVersion, query: np.ndarray, limit: int,
                 ef_search: int | None = None) -> list[tuple[int, float]]:
    """(item pk, inner product) best first through the version's HNSW index."""
    _search_settings(min(max(ef_search or search_ef(limit), 40), EF_SEARCH_MAX))
    hits = nearest_items(version, query, limit)
    if pgvector_version() >= (0, 8):  # relaxed order: re-sort what came back
        hits.sort(key=lambda hit: -hit[1])
    return hits


NORM_HEAD = 2048  # items scored exactly on every search: the largest item vectors
_HEADS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def norm_head(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """(Item pks, item vectors) of the version's NORM_HEAD largest item vectors.

    An HNSW graph searched by inner product misses exactly these (measured on 100k ALS items:
    the index's misses sit at norm ranks ~200-800, and its recall@100 rises from 0.79 to
    0.99 once the 1,000 largest are scored exactly), so every search scores them in numpy
    (a few microseconds) and merges them with the index's hits."""
    head = _HEADS.get(bundle.version_id)
    if head is None:
        vectors = bundle.model.item_vectors()
        columns = np.argsort(-np.linalg.norm(vectors, axis=1), kind="stable")[:NORM_HEAD]
        head = (bundle.item_pks(columns), np.ascontiguousarray(vectors[columns]))
        _HEADS[bundle.version_id] = head
    return head


def candidate_search(version: ModelVersion, bundle: ModelBundle, query: np.ndarray,
                     limit: int) -> tuple[list[tuple[ItemInfo, float]], int]:
    """The best `limit` items for `query`: the version's HNSW index merged with the exactly
    scored norm head, catalogue rows joined in, best first; one round trip. Returns the hits
    and how many rows the index gave (fewer than `limit`: it has no more at this ef_search)."""
    _search_settings(search_ef(limit))
    head_pks, head_vectors = norm_head(bundle)
    head_scores = head_vectors @ query
    best = (np.argpartition(-head_scores, limit)[:limit] if limit < head_scores.size
            else np.arange(head_scores.size))  # in any order: the statement sorts
    with _prepared_cursor() as cursor:
        cursor.execute(_candidate_sql(version, limit), {
            # Arrays as text literals: psycopg adapts a Python list element by element.
            "query": np.asarray(query, np.float32),
            "head": "{" + ",".join(map(str, head_pks[best].tolist())) + "}",
            "scores": "{" + ",".join(map(repr, head_scores[best].tolist())) + "}"},
            prepare=True)
        rows = cursor.fetchall()
    width = len(_ITEM_COLUMNS)
    hits, indexed = [], 0
    for row in rows:
        hits.append((ItemInfo(*row[:width]), float(row[width])))
        indexed += bool(row[width + 1])
    return hits[:limit], indexed


def _candidate_sql(version: ModelVersion, limit: int) -> str:
    """The version and the limit are part of the text, not parameters: the statement is
    prepared once per version and limit, and its generic plan can still match the version's
    partial HNSW index and know how many rows it will fetch."""
    dims, version_id = int(version.dimensions), int(version.pk)
    embedding = f"embedding::vector({dims})"
    columns = ", ".join(f"i.{c}" for c in _ITEM_COLUMNS)
    return (
        f"WITH idx AS MATERIALIZED (SELECT item_id, "
        f"-({embedding} <#> %(query)s::vector({dims})) AS score FROM registry_itemvector "
        f"WHERE model_version_id = {version_id} "
        f"ORDER BY {embedding} <#> %(query)s::vector({dims}) LIMIT {int(limit)}), "
        f"head AS (SELECT x.item_id, x.score FROM unnest(%(head)s::bigint[], "
        f"%(scores)s::float8[]) AS x(item_id, score) "
        f"WHERE x.score > (SELECT min(score) FROM idx) "
        f"AND x.item_id NOT IN (SELECT item_id FROM idx)) "
        f"SELECT {columns}, h.score, h.indexed FROM (SELECT item_id, score, true AS indexed "
        f"FROM idx UNION ALL SELECT item_id, score, false FROM head) h "
        f"JOIN catalog_item i ON i.id = h.item_id ORDER BY h.score DESC")


def _mf_candidates(selector: Selector, version: ModelVersion, bundle: ModelBundle,
                   vector: np.ndarray) -> None:
    """Over-fetch from the index (with the norm head), doubling the batch (and ef_search)
    until `k` candidates pass the rules; when the index cannot give more (pgvector < 0.8
    returns at most ef_search rows, filters apply after the scan) or the catalogue is
    exhausted, finish exactly."""
    query = bundle.model.user_vectors(vector)[0]
    n_items = version.n_item_vectors
    fetch = min(max(4 * selector.k, 50), n_items)
    while not selector.full:
        hits, indexed = candidate_search(version, bundle, query, fetch)
        selector.offer_items(hits, "mf")  # rows offered before are skipped by the selector
        if selector.full:
            return
        if indexed < fetch or fetch >= n_items:
            break
        fetch = min(fetch * 2, n_items)
    # The exact scan over the model's items, best first (in chunks: only what is looked at
    # before k items are accepted costs item rows).
    scores = bundle.model.score(vector[None, :])[0]
    order = np.argsort(-scores, kind="stable")
    selector.offer(bundle.item_pks(order), scores[order], "mf")


def _content(selector: Selector, bundle: ModelBundle, pks_weights: list[tuple[int, float]]
             ) -> None:
    """Content-based from a history or session. Items the model has never seen (new items)
    still count: their TF-IDF vectors come from their catalogue description."""
    content = bundle.content
    if content is None or not pks_weights:
        return
    weights: dict[int, float] = {}
    for pk, weight in pks_weights:
        weights[pk] = weights.get(pk, 0.0) + weight
    pks = list(weights)
    columns = bundle.columns(pks)
    known = [(c, weights[pk]) for pk, c in zip(pks, columns.tolist(), strict=True) if c >= 0]
    unknown = [pk for pk, c in zip(pks, columns.tolist(), strict=True) if c < 0]
    parts = []
    if known:
        rows = content.item_vectors_[[c for c, _ in known]]
        parts.append(sp.diags([w for _, w in known]) @ rows)
    if unknown:
        described = list(Item.objects.filter(tenant=selector.tenant, pk__in=unknown)
                         .values_list("id", "category", "tags", "attributes"))
        tokens = item_tokens(len(described), categories=[d[1] for d in described],
                             tags=[d[2] for d in described], attributes=[d[3] for d in described])
        rows = content.transform_items(tokens)
        parts.append(sp.diags([weights[d[0]] for d in described]) @ rows)
    profile = sp.vstack(parts).sum(axis=0)
    scores = np.asarray(content.item_vectors_ @ np.asarray(profile).ravel()).ravel()
    if not np.any(scores > 0):
        return
    positive = np.flatnonzero(scores > 0)
    best, _ = top_n(scores[positive], max((selector.k - len(selector.picks)) * 5, 50))
    order = positive[best[0][best[0] >= 0]]
    selector.offer(bundle.item_pks(order), scores[order], "content",
                   lambda item: f"matches your interest in {item.category}" if item.category
                   else "similar to items you interacted with")


def _editorial(selector: Selector, category: str | None) -> None:
    picks = EditorialPick.objects.filter(tenant=selector.tenant)
    if category:
        picks = picks.filter(category__in=["", category])
    pks = [p.item_id for p in picks]
    selector.offer(pks, [0.0] * len(pks), "editorial",
                   lambda item: "picked by the editors")


def _popularity(selector: Selector, bundle: ModelBundle | None, category: str | None) -> None:
    if bundle is not None:
        if category and hasattr(bundle.popularity, "item_categories_"):
            # A preference, not the guarantee of k items (the whole list below is): a bounded
            # look, since a per-category cap would turn away all but a few of them.
            pks, scores = bundle.popular(category)
            look = max(10 * (selector.k - len(selector.picks)), 100)
            selector.offer(pks[:look], scores[:look], "popularity",
                           lambda item: f"popular in {item.category}")
        pks, scores = bundle.popular()
        selector.offer(pks, scores, "popularity", _popular_reason)
    if not selector.full:  # no model yet, or items newer than it: recent events decide
        with connection.cursor() as cursor:
            cursor.execute(
                # Positive kinds only: hides, dislikes and reports never make an item popular.
                "SELECT e.item_id, count(*) FROM catalog_event e JOIN catalog_eventtype t"
                " ON t.id = e.event_type_id WHERE e.tenant_id = %s AND t.kind = 'positive'"
                " AND e.timestamp >= now() - interval '30 days' GROUP BY e.item_id "
                "ORDER BY count(*) DESC, e.item_id LIMIT %s",
                [selector.tenant.pk, max(selector.k * 5, 100)])
            rows = cursor.fetchall()
            selector.offer([pk for pk, _c in rows], [float(c) for _pk, c in rows], "popularity",
                           _popular_reason)


def _popular_reason(item: ItemInfo) -> str:
    return f"popular in {item.category}" if item.category else "popular right now"


def _explain_mf(bundle: ModelBundle, history: list[tuple[int, str, float]],
                session_pks: list[int], tenant):
    """The history item whose vector is nearest (cosine) to the recommended item's."""
    pks = list(dict.fromkeys(session_pks + [pk for pk, _t, _ts in history]))[:200]
    columns = bundle.columns(pks)
    known = columns >= 0
    if not known.any():
        return lambda item: "matches your taste profile"
    factors = bundle.model.item_factors_
    mine = factors[columns[known]]
    mine = mine / np.maximum(np.linalg.norm(mine, axis=1, keepdims=True), 1e-9)
    names = load_items(tenant, np.asarray(pks)[known].tolist())
    mine_pks = np.asarray(pks)[known]

    def reason(item: ItemInfo) -> str:
        column = bundle.columns([item.id])[0]
        if column < 0:
            return "matches your taste profile"
        vector = factors[column] / max(float(np.linalg.norm(factors[column])), 1e-9)
        nearest = int(mine_pks[int(np.argmax(mine @ vector))])
        source = names.get(nearest)
        label = (source.title or source.external_id) if source else str(nearest)
        return f"because you interacted with {label}"

    return reason


# -- the entry points ---------------------------------------------------------------------------

def recommend(tenant: Tenant, user_external_id: str | None, request: Request) -> dict:
    if not 1 <= request.k <= MAX_K:
        raise ServingError("k", f"k must be between 1 and {MAX_K}")
    state = request_state(tenant, user_external_id)
    version, user, history = state.version, state.user, state.history
    bundle = _bundle(version)
    personalised = user is None or user.consent
    external = items_by_external_id(tenant, request.recent_items + request.exclude)
    session_pks = [external[e] for e in request.recent_items if e in external]
    # What the user is looking at right now is not worth recommending back.
    excluded = {external[e] for e in request.exclude if e in external} | set(session_pks)
    context = RuleContext(tenant=tenant, user=user, now=timezone.now())
    if user is not None:
        context.history = {}
        for pk, type_name, _ts in history:
            context.history.setdefault(pk, set()).add(type_name)
        context.suppressed = state.suppressed
    extra = []
    if request.category:
        extra.append(CategoryFilter({"include": [request.category]}, name="request:category"))
    rules = tenant_rules(tenant, extra, configured=state.rules)
    selector = Selector(tenant, rules, context, request.k, excluded)

    precomputed_used = False
    # A list computed before the user's latest events would ignore them: those users get the
    # live path, which folds them in.
    if (request.precomputed and personalised and user is not None and version is not None
            and not (bundle is not None and _newer_than_model(bundle, history))):
        precomputed_used = _offer_precomputed(selector, version, user)
    vector = None
    if bundle is not None and bundle.kind == ModelKind.MF and personalised:
        vector = user_vector(bundle, user, history, session_pks)
    if vector is not None and not selector.full:
        reason = _explain_mf(bundle, history, session_pks, tenant) if request.explain else None
        if reason is not None:
            for pick in selector.picks:  # precomputed picks get their reasons too
                pick.reason = pick.reason or reason(pick.item)
        before = len(selector.picks)
        _mf_candidates(selector, version, bundle, vector)
        if reason is not None:
            for pick in selector.picks[before:]:
                pick.reason = reason(pick.item)
    fallback_used = False
    if not selector.full and bundle is not None and personalised:
        weighted = [(pk, 1.0) for pk in session_pks] + [
            (pk, bundle.event_weights.get(t, 1.0)) for pk, t, _ts in history]
        before = len(selector.picks)
        _content(selector, bundle, weighted)
        fallback_used |= len(selector.picks) > before
    if not selector.full:
        before = len(selector.picks)
        _editorial(selector, request.category)
        _popularity(selector, bundle, request.category)
        fallback_used |= len(selector.picks) > before
    if context.data.get("record_impressions") and user is not None and selector.picks:
        Impression.objects.bulk_create([Impression(tenant=tenant, user=user, item_id=p.item.id)
                                        for p in selector.picks])
    metrics.record_response(tenant.slug, selector, fallback_used)
    return {
        "recommendation_id": str(uuid.uuid4()),
        "user": user_external_id,
        "personalised": bool(personalised and vector is not None),
        "model_version": None if version is None else {
            "id": version.pk, "version": version.version, "kind": version.kind},
        "precomputed": precomputed_used,
        "rules": [r.name for r in rules],
        "filtered": selector.filtered,
        "items": [_item_json(p, request.explain) for p in selector.picks],
    }


def _item_json(pick: Pick, explain: bool) -> dict:
    out = {"item": pick.item.external_id, "score": round(pick.score, 6), "source": pick.source}
    if explain:
        out["reason"] = pick.reason
    return out


def _offer_precomputed(selector: Selector, version: ModelVersion, user: EndUser) -> bool:
    from mfplatform.serving.models import PrecomputedRecommendation

    stored = PrecomputedRecommendation.objects.filter(model_version=version, user=user).first()
    if stored is None:
        return False
    selector.offer([int(pk) for pk, _s in stored.items], [float(s) for _pk, s in stored.items],
                   "mf")
    return True


def similar_items(tenant: Tenant, item_external_id: str, k: int,
                  explain: bool = False) -> dict | None:
    """Items like the given one (by item vectors; content-based for an item without one).
    None when the tenant has no such item."""
    if not 1 <= k <= MAX_K:
        raise ServingError("k", f"k must be between 1 and {MAX_K}")
    item = (Item.objects.filter(tenant=tenant, external_id=item_external_id)
            .only("id", "external_id", "title", "category").first())
    if item is None:
        return None
    state = request_state(tenant, None)  # the active version and the rules, one round trip
    version = state.version
    bundle = _bundle(version)
    rules = [r for r in tenant_rules(tenant, configured=state.rules)
             if r.kind not in ("not_interacted", "not_suppressed")]
    selector = Selector(tenant, rules, RuleContext(tenant=tenant, user=None,
                                                   now=timezone.now()), k, {item.pk})
    label = item.title or item.external_id
    column = bundle.columns([item.pk])[0] if bundle is not None else -1
    if bundle is not None and bundle.model is not None and column >= 0:
        vector = bundle.model.item_factors_[column]
        # As wide as the indexed vectors (item_vectors() would copy every item to find out).
        query = np.zeros(int(version.dimensions), dtype=np.float32)
        query[: vector.size] = vector  # no bias component: a pure factor inner product
        hits, _indexed = candidate_search(version, bundle, query,
                                          min(max(4 * k, 50), version.n_item_vectors))
        selector.offer_items(hits, "mf", lambda _i: f"often liked together with {label}")
    if not selector.full and bundle is not None:
        _content(selector, bundle, [(item.pk, 1.0)])
    if not selector.full:
        _popularity(selector, bundle, item.category or None)
    metrics.record_response(tenant.slug, selector, False)
    return {"item": item_external_id,
            "model_version": None if version is None else {"id": version.pk,
                                                           "version": version.version},
            "rules": [r.name for r in rules],
            "items": [_item_json(p, explain) for p in selector.picks]}
