"""Candidates from the model: the version's HNSW index in pgvector (inner product), merged
with the exactly scored norm head, fetched in growing batches until `k` items pass the rules,
finished exactly in numpy when the index has no more; or a precomputed list."""

from __future__ import annotations

import numpy as np
from django.db import connection

from mfplatform.catalog.models import EndUser
from mfplatform.registry.models import ModelVersion
from mfplatform.registry.vectors import nearest_items, partition_name, vector_array
from mfplatform.serving.bundle import NORM_HEAD, ModelBundle  # noqa: F401 (benchmarks)
from mfplatform.serving.explain import cold_item_reason, similar_reason
from mfplatform.serving.items import ITEM_COLUMNS, prepared_cursor
from mfplatform.serving.rules import ItemInfo
from mfplatform.serving.selector import Selector
from mfplatform.serving.state import History, newer_than_model

COLD_SOURCE = "mf_cold"  # a new item, placed in the model by its content
EF_SEARCH_MIN = 40  # pgvector's default hnsw.ef_search: never search narrower
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
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


def search_settings(ef_search: int) -> None:
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
    return min(max(limit, EF_SEARCH_MIN), EF_SEARCH_MAX)


def index_search(version: ModelVersion, query: np.ndarray, limit: int,
                 ef_search: int | None = None) -> list[tuple[int, float]]:
    """(item pk, inner product) best first through the version's HNSW index alone (what
    the benchmark compares serving's candidate search with)."""
    search_settings(search_ef(ef_search or limit))
    hits = nearest_items(version, query, limit)
    if pgvector_version() >= (0, 8):  # relaxed order: re-sort what came back
        hits.sort(key=lambda hit: -hit[1])
    return hits


def norm_head(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """(Item pks, item vectors) of the version's NORM_HEAD largest item vectors, made when
    the bundle is loaded (bundle.py) and cached with it.

    An HNSW graph searched by inner product misses exactly these (measured on 100k ALS items:
    the index's misses sit at norm ranks ~200-800, and its recall@100 rises from 0.79 to
    0.99 once the 1,000 largest are scored exactly), so every search scores them in numpy
    (a few microseconds) and merges them with the index's hits."""
    return bundle.head


def candidate_search(version: ModelVersion, bundle: ModelBundle, query: np.ndarray,
                     limit: int, ef_search: int | None = None,
                     cold: dict[int, str] | None = None
                     ) -> tuple[list[tuple[ItemInfo, float]], int]:
    """The best `limit` items for `query`: the version's HNSW index merged with the exactly
    scored norm head, catalogue rows joined in, best first; one round trip. Returns the hits
    and how many rows the index gave (fewer than `limit`: it has no more at this ef_search).
    `ef_search` overrides the search width serving derives from `limit` (for measurements).
    `cold`, when given, receives {item pk: placement} of the hits that are new items placed
    by their content (registry.cold) rather than trained."""
    search_settings(search_ef(ef_search or limit))
    head_pks, head_vectors = norm_head(bundle)
    head_scores = head_vectors @ query
    best = (np.argpartition(-head_scores, limit)[:limit] if limit < head_scores.size
            else np.arange(head_scores.size))  # in any order: the statement sorts
    with prepared_cursor() as cursor:
        cursor.execute(candidate_sql(version, limit), {
            # Arrays as text literals: psycopg adapts a Python list element by element.
            "query": np.asarray(query, np.float32),
            "head": "{" + ",".join(map(str, head_pks[best].tolist())) + "}",
            "scores": "{" + ",".join(map(repr, head_scores[best].tolist())) + "}"},
            prepare=True)
        rows = cursor.fetchall()
    width = len(ITEM_COLUMNS)
    hits, indexed = [], 0
    for row in rows:
        hits.append((ItemInfo(*row[:width]), float(row[width])))
        indexed += bool(row[width + 1])
        if row[width + 2] and cold is not None:
            cold[row[0]] = row[width + 2]
    return hits[:limit], indexed


def candidate_sql(version: ModelVersion, limit: int) -> str:
    """The version and the limit are part of the text, not parameters: the statement is
    prepared once per version and limit and knows how many rows it will fetch. It reads the
    version's partition by its own name (row-level security is on it too), not the parent:
    planning then opens one table and its index, however many versions are stored (through
    the parent, a new connection loads every partition's bounds first)."""
    dims, version_id = int(version.dimensions), int(version.pk)
    embedding = f"embedding::vector({dims})"
    columns = ", ".join(f"i.{c}" for c in ITEM_COLUMNS)
    return (
        f"WITH idx AS MATERIALIZED (SELECT item_id, cold_placement, "
        f"-({embedding} <#> %(query)s::vector({dims})) AS score "
        f"FROM {partition_name('item', version_id)} "
        f"ORDER BY {embedding} <#> %(query)s::vector({dims}) LIMIT {int(limit)}), "
        f"head AS (SELECT x.item_id, x.score FROM unnest(%(head)s::bigint[], "
        f"%(scores)s::float8[]) AS x(item_id, score) "
        f"WHERE x.score > (SELECT min(score) FROM idx) "
        f"AND x.item_id NOT IN (SELECT item_id FROM idx)) "
        f"SELECT {columns}, h.score, h.indexed, h.cold_placement FROM (SELECT item_id, score, "
        f"true AS indexed, cold_placement FROM idx "
        f"UNION ALL SELECT item_id, score, false, '' FROM head) h "
        f"JOIN catalog_item i ON i.id = h.item_id ORDER BY h.score DESC")


def _first_fetch(selector: Selector, version: ModelVersion) -> int:
    return min(max(4 * selector.k, 50), version.n_item_vectors)


def mf_candidates(selector: Selector, version: ModelVersion, bundle: ModelBundle,
                  vector: np.ndarray, source: str = "mf", offered: int = 0) -> None:
    """Over-fetch from the index (with the norm head), doubling the batch (and ef_search)
    until `k` candidates pass the rules; when the index cannot give more (pgvector < 0.8
    returns at most ef_search rows, filters apply after the scan) or the catalogue is
    exhausted, finish exactly. Items are labelled `source` (how the user's vector was made),
    new items placed by their content "mf_cold". `offered`: how many of the ranking's first
    items were offered already (a precomputed list of this vector's best): the first search
    reaches past them, since a search no deeper would bring nothing new."""
    query = bundle.model.user_vectors(vector)[0]
    fetch = _first_fetch(selector, version)
    while fetch <= offered:  # the same doubling steps: the statements prepared stay few
        fetch *= 2
    while not selector.full:
        cold: dict[int, str] = {}
        hits, indexed = candidate_search(version, bundle, query, fetch, cold=cold)
        offer_hits(selector, hits, cold, source)  # rows offered before are skipped
        if selector.full:
            return
        # The count may predate new items placed since this process cached the version
        # row: only the index running dry ends the doubling.
        if indexed < fetch:
            break
        fetch *= 2
    # The exact scan over the model's items, best first (in chunks: only what is looked at
    # before k items are accepted costs item rows).
    scores = bundle.model.score(vector[None, :])[0]
    order = np.argsort(-scores, kind="stable")
    selector.offer(bundle.item_pks(order), scores[order], source)


def offer_hits(selector: Selector, hits: list[tuple[ItemInfo, float]], cold: dict[int, str],
               source: str, reason=None) -> None:
    """The search's hits in order, each new item (in `cold`) as "mf_cold" with the reason
    saying how it was placed, the others as `source`."""
    if not cold:
        selector.offer_items(hits, source, reason)
        return
    for item, score in hits:
        if selector.full:
            return
        placement = cold.get(item.id)
        if placement is None:
            selector.offer_items([(item, score)], source, reason)
        else:
            selector.offer_items([(item, score)], COLD_SOURCE, cold_item_reason(placement))


def similar_candidates(selector: Selector, version: ModelVersion | None,
                       bundle: ModelBundle | None, item_pk: int, label: str) -> None:
    """The item's nearest items by inner product of factors, from one index search; nothing
    when the model has no vector for the item (a new item's is read from its partition)."""
    if bundle is None or bundle.model is None:
        return
    column = bundle.columns([item_pk])[0]
    if column >= 0:
        vector = bundle.model.item_factors_[column]
    else:
        vector = _cold_item_factors(version, bundle, item_pk)
        if vector is None:
            return
    # As wide as the indexed vectors (item_vectors() would copy every item to find out).
    query = np.zeros(int(version.dimensions), dtype=np.float32)
    query[: vector.size] = vector  # no bias component: a pure factor inner product
    cold: dict[int, str] = {}
    hits, _indexed = candidate_search(version, bundle, query, _first_fetch(selector, version),
                                      cold=cold)
    offer_hits(selector, hits, cold, "mf", similar_reason(label))


def _cold_item_factors(version: ModelVersion, bundle: ModelBundle, item_pk: int
                       ) -> np.ndarray | None:
    """The factors of a new item placed by its content (registry.cold), None when it has no
    vector in the version either."""
    with prepared_cursor() as cursor:
        cursor.execute(f"SELECT embedding FROM {partition_name('item', version.pk)} "
                       f"WHERE item_id = %(item)s AND cold", {"item": int(item_pk)},
                       prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    return vector_array(row[0])[: bundle.model.n_factors_]


# The user's precomputed list with each listed item's catalogue row, in the list's order, one
# round trip (a prepared statement, the same text for every tenant). Each row is looked up by
# its primary key (LIMIT 1 keeps the lookup a subquery: joined flat, the generic plan hashes
# the whole catalogue). A stored list none of whose items is in the catalogue any more gives
# one row of NULLs: it exists, but offers nothing.
_PRECOMPUTED_SQL = (
    f"SELECT {', '.join(f'x.{c}' for c in ITEM_COLUMNS)}, x.score, x.placement "
    f"FROM serving_precomputedrecommendation p LEFT JOIN LATERAL ("
    f"SELECT i.*, (e.entry ->> 1)::float8 AS score, e.entry ->> 2 AS placement, e.n "
    f"FROM jsonb_array_elements(p.items) WITH ORDINALITY AS e(entry, n) "
    f"CROSS JOIN LATERAL (SELECT {', '.join(ITEM_COLUMNS)} FROM catalog_item "
    f"WHERE id = (e.entry ->> 0)::bigint AND tenant_id = p.tenant_id LIMIT 1) i"
    f") x ON true "
    f"WHERE p.tenant_id = %(tenant)s AND p.model_version_id = %(version)s "
    f"AND p.user_id = %(user)s ORDER BY x.n")


def precomputed_candidates(selector: Selector, version: ModelVersion | None,
                           bundle: ModelBundle | None, user: EndUser | None,
                           history: History) -> int | None:
    """Offer the user's precomputed list; returns how many entries it held, None when there
    is none to use. A list computed before the user's latest events would ignore them: those
    users get the live path, which folds them in."""
    if user is None or version is None:
        return None
    if bundle is not None and newer_than_model(bundle, history):
        return None
    with prepared_cursor() as cursor:
        cursor.execute(_PRECOMPUTED_SQL, {"tenant": selector.tenant.pk, "version": version.pk,
                                          "user": user.pk}, prepare=True)
        rows = cursor.fetchall()
    if not rows:
        return None
    # Trained items as "mf", new items placed by their content (stored with their
    # placement, serving.precompute) as "mf_cold", in the list's order.
    width = len(ITEM_COLUMNS)
    listed = [(ItemInfo(*row[:width]), row[width]) for row in rows if row[0] is not None]
    cold = {row[0]: row[width + 1] for row in rows
            if row[0] is not None and row[width + 1] is not None}
    offer_hits(selector, listed, cold, "mf")
    return len(rows)
