"""What fills a list the model could not: content-based (from a history or session),
editorial picks, popularity (the model version's, then recent events')."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import connection

from mfengine.baselines import item_tokens, top_n
from mfplatform.catalog.models import Item
from mfplatform.serving.bundle import ModelBundle
from mfplatform.serving.cache import serving_cache
from mfplatform.serving.explain import (
    category_popular_reason,
    content_reason,
    editorial_reason,
    popular_reason,
)
from mfplatform.serving.models import EditorialPick
from mfplatform.serving.selector import Selector
from mfplatform.serving.state import History


def fallback_chain(selector: Selector, bundle: ModelBundle | None, history: History,
                   session: list[int], category: str | None, personalised: bool) -> bool:
    """Content-based (when the user's data may be used), then editorial picks and
    popularity, each only while the list is short. Returns whether any of them added items."""
    before = len(selector.picks)
    if not selector.full and bundle is not None and personalised:
        content(selector, bundle, [(pk, 1.0) for pk in session] + [
            (pk, bundle.event_weights.get(event_type, 1.0)) for pk, event_type, _ts in history])
    if not selector.full:
        editorial(selector, category)
        popularity(selector, bundle, category)
    return len(selector.picks) > before


def content(selector: Selector, bundle: ModelBundle, pks_weights: list[tuple[int, float]]
            ) -> None:
    """Content-based from a history or session. Items the model has never seen (new items)
    still count: their TF-IDF vectors come from their catalogue description."""
    if bundle.content is None or not pks_weights:
        return
    profile = _content_profile(selector, bundle, pks_weights)
    scores = np.asarray(bundle.content.item_vectors_ @ profile).ravel()
    positive = np.flatnonzero(scores > 0)
    if not positive.size:
        return
    best, _ = top_n(scores[positive], max(selector.missing * 5, 50))
    order = positive[best[0][best[0] >= 0]]
    selector.offer(bundle.item_pks(order), scores[order], "content", content_reason)


def _content_profile(selector: Selector, bundle: ModelBundle,
                     pks_weights: list[tuple[int, float]]) -> np.ndarray:
    """The weighted sum of the items' TF-IDF vectors: the model's for items it knows, built
    from the catalogue description for the others."""
    weights: dict[int, float] = {}
    for pk, weight in pks_weights:
        weights[pk] = weights.get(pk, 0.0) + weight
    pks = list(weights)
    columns = bundle.columns(pks).tolist()
    known = [(column, weights[pk]) for pk, column in zip(pks, columns, strict=True)
             if column >= 0]
    unknown = [pk for pk, column in zip(pks, columns, strict=True) if column < 0]
    parts = []
    if known:
        rows = bundle.content.item_vectors_[[column for column, _ in known]]
        parts.append(sp.diags([weight for _, weight in known]) @ rows)
    if unknown:
        described = list(Item.objects.filter(tenant=selector.tenant, pk__in=unknown)
                         .values_list("id", "category", "tags", "attributes"))
        tokens = item_tokens(len(described), categories=[d[1] for d in described],
                             tags=[d[2] for d in described], attributes=[d[3] for d in described])
        rows = bundle.content.transform_items(tokens)
        parts.append(sp.diags([weights[d[0]] for d in described]) @ rows)
    return np.asarray(sp.vstack(parts).sum(axis=0)).ravel()


def editorial(selector: Selector, category: str | None) -> None:
    picks = EditorialPick.objects.filter(tenant=selector.tenant)
    if category:
        picks = picks.filter(category__in=["", category])
    pks = [p.item_id for p in picks]
    selector.offer(pks, [0.0] * len(pks), "editorial", editorial_reason)


def popularity(selector: Selector, bundle: ModelBundle | None, category: str | None) -> None:
    if bundle is not None:
        if category and hasattr(bundle.popularity, "item_categories_"):
            # A preference, not the guarantee of k items (the whole list below is): a bounded
            # look, since a per-category cap would turn away all but a few of them.
            pks, scores = bundle.popular(category)
            look = max(10 * selector.missing, 100)
            selector.offer(pks[:look], scores[:look], "popularity", category_popular_reason)
        pks, scores = bundle.popular()
        selector.offer(pks, scores, "popularity", popular_reason)
    if not selector.full:  # no model yet, or items newer than it: recent events decide
        _recent_popularity(selector)


def _recent_popularity(selector: Selector) -> None:
    rows = recent_popular(selector.tenant.pk, max(selector.k * 5, 100))
    selector.offer([pk for pk, _c in rows], [float(c) for _pk, c in rows], "popularity",
                   popular_reason)


def recent_popular(tenant_id: int, limit: int) -> list[tuple[int, int]]:
    """(Item pk, positive events) of the tenant's last 30 days, most first. A tenant without
    an active model gets this on every request, and it counts every recent event of the
    tenant: kept in the serving cache for SERVING_RECENT_POPULARITY_SECONDS."""
    cache, key, now = serving_cache(), ("recent", tenant_id, limit), time.monotonic()
    cached = cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(
            # Positive kinds only: hides, dislikes and reports never make an item popular.
            "SELECT e.item_id, count(*) FROM catalog_event e JOIN catalog_eventtype t"
            " ON t.id = e.event_type_id WHERE e.tenant_id = %s AND t.kind = 'positive'"
            " AND e.timestamp >= now() - interval '30 days' GROUP BY e.item_id "
            "ORDER BY count(*) DESC, e.item_id LIMIT %s", [tenant_id, limit])
        rows = cursor.fetchall()
    ttl = settings.SERVING_RECENT_POPULARITY_SECONDS
    if ttl > 0:
        cache.put(key, (now + ttl, rows), 128 + 64 * len(rows))
    return rows
