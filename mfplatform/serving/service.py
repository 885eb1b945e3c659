"""Recommendations for one user, and items similar to one item, as a list of stages:

    state.py       the request's state from Postgres in one round trip (active version, user,
                   history, suppressions, rules), the session's items, the model files, and
                   the user's vector (stored, folded in from newer events, session-blended);
    selector.py    the rules that hold for the request and the selector that applies them;
    candidates.py  pgvector HNSW search merged with the exact norm head, fetched in growing
                   batches until k items pass the rules, an exact finish; precomputed lists;
    fallbacks.py   content-based (history or session), editorial picks, popularity;
    explain.py     a reason per item, on request.
Every item carries its source and, on request, a reason.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from mfplatform.catalog.models import EndUser, Item
from mfplatform.registry.models import ModelVersion
from mfplatform.serving import metrics
from mfplatform.serving.bundle import ModelBundle
from mfplatform.serving.candidates import (
    mf_candidates,
    precomputed_candidates,
    similar_candidates,
)
from mfplatform.serving.cold import SEGMENT_SOURCE, segment_reason, served_vector
from mfplatform.serving.explain import give_reasons, mf_reason
from mfplatform.serving.exploration import Exploring
from mfplatform.serving.fallbacks import content, fallback_chain, popularity
from mfplatform.serving.models import Impression
from mfplatform.serving.online import NO_EXPERIMENT, assign, log_impression
from mfplatform.serving.rules import CategoryFilter, Rule
from mfplatform.serving.selector import Pick, Selector, rule_context, tenant_rules
from mfplatform.serving.state import (
    RequestState,
    Session,
    load_model,
    request_state,
    session_items,
)
from tenants.auth import confirm_key
from tenants.models import ApiKey, Tenant

MAX_K = 1000
SCOPE = "recommend"  # what an API key needs for serving's endpoints
# Rules about one user's own data, which do not apply to an item's neighbours.
USER_RULE_KINDS = ("not_interacted", "not_suppressed")


class ServingError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Request:
    k: int = 10
    recent_items: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    category: str | None = None
    explain: bool = False
    precomputed: bool = False


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise ServingError("k", f"k must be between 1 and {MAX_K}")


def recommend(tenant: Tenant, user_external_id: str | None, request: Request,
              api_key: ApiKey | None = None) -> dict:
    """A user's recommendations; with an experiment running on the surface, from the model
    version of the user's variant, and labelled with the experiment and variant. `api_key`,
    the request's (cached) key, is confirmed by the state's round trip (tenants.auth)."""
    started = time.perf_counter()
    _check_k(request.k)
    state = request_state(tenant, user_external_id)
    confirm_key(api_key, state.auth_version, SCOPE)
    active = state.version  # what state.exploration was read for (a variant may serve another)
    assignment, state = assign(tenant, "recommendations", user_external_id, state)
    bundle = load_model(state.version)
    session = session_items(tenant, request.recent_items, request.exclude)
    rules = tenant_rules(tenant, _request_rules(request), configured=state.rules)
    selector = Selector(tenant, rules,
                        rule_context(tenant, state.user, state.history, state.suppressed),
                        request.k, session.excluded)
    # The popularity control of an experiment: no model, no personal data, no exploration.
    popularity_only = bool(assignment and assignment.popularity_only)
    personalised = state.personalised and not popularity_only
    recommendation_id = uuid.uuid4()
    exploring = Exploring.start(None if popularity_only else state.version, bundle, selector,
                                recommendation_id, state.exploration, active)
    # A stored list knows neither a session's items nor what they exclude: a request with
    # recent items is blended live.
    listed = (precomputed_candidates(selector, state.version, bundle, state.user,
                                     state.history)
              if request.precomputed and personalised and not session.items else None)
    vector, source = (served_vector(bundle, state, session.items, bool(user_external_id))
                      if personalised else (None, "mf"))
    if vector is not None and not selector.full:
        _model_candidates(selector, state, bundle, vector, session, request.explain, source,
                          offered=listed or 0)
    exploring.finish(selector, vector)
    fallback_used = _fill_with_fallbacks(selector, bundle, state, session, request.category,
                                         personalised, popularity_only)
    _record_impressions(tenant, state.user, selector)
    metrics.record_response(tenant.slug, selector, fallback_used)
    log_impression(tenant, "recommendations", recommendation_id, user_external_id, state.user,
                   selector, None if state.version is None else state.version.pk, assignment,
                   fallback_used, started)
    return {
        "recommendation_id": str(recommendation_id),
        **(NO_EXPERIMENT if assignment is None else assignment.label()),
        "user": user_external_id,
        "personalised": bool(personalised and vector is not None),
        "model_version": _model_version_json(state.version),
        "precomputed": listed is not None,
        "rules": [r.name for r in rules],
        "filtered": selector.filtered,
        "items": [_item_json(p, request.explain) for p in selector.picks],
        "warnings": _warnings(tenant, user_external_id, state, session, request.category),
    }


def _fill_with_fallbacks(selector: Selector, bundle, state: RequestState, session: Session,
                         category: str | None, personalised: bool, popularity_only: bool) -> bool:
    """The slots the model left empty; True when a fallback filled some. An experiment's
    popularity control gets popularity only (not a fallback: it is the variant)."""
    if popularity_only:
        popularity(selector, bundle, category)
        return False
    return fallback_chain(selector, bundle, state.history, session.items, category,
                          personalised)


def _model_version_json(version) -> dict | None:
    return None if version is None else {**_version_json(version), "kind": version.kind}


def _warnings(tenant: Tenant, user_external_id: str | None, state: RequestState,
              session: Session, category: str | None) -> list[str]:
    """What in the request named nothing of the tenant's: said, not silently ignored."""
    warnings = []
    if user_external_id and state.user is None:
        warnings.append(f"unknown user {user_external_id!r}: answered as a new user")
    if session.unknown:
        warnings.append("unknown items in recent_items/exclude, ignored: "
                        + ", ".join(repr(e) for e in session.unknown[:20]))
    if category and not Item.objects.filter(tenant=tenant, category=category).exists():
        warnings.append(f"no item has category {category!r}")
    return warnings


def _request_rules(request: Request) -> list[Rule]:
    """Rules the request adds to the tenant's: `category` keeps only that category."""
    if not request.category:
        return []
    return [CategoryFilter({"include": [request.category]}, name="request:category")]


def _model_candidates(selector: Selector, state: RequestState, bundle: ModelBundle,
                      vector: np.ndarray, session: Session, explain: bool,
                      source: str = "mf", offered: int = 0) -> None:
    """The model's candidates for the user's vector, with reasons when asked for."""
    reason = None
    if explain:
        reason = (segment_reason if source == SEGMENT_SOURCE else
                  mf_reason(selector.tenant, bundle, state.history, session.items))
    mf_candidates(selector, state.version, bundle, vector, source, offered)
    if reason is not None:  # the precomputed picks get their reasons too
        give_reasons(selector.picks, reason)


def _record_impressions(tenant: Tenant, user: EndUser | None, selector: Selector) -> None:
    """What was shown, when a rule (a frequency cap) asked for it."""
    if selector.context.data.get("record_impressions") and user is not None and selector.picks:
        Impression.objects.bulk_create([Impression(tenant=tenant, user=user, item_id=p.item.id)
                                        for p in selector.picks])


def _item_json(pick: Pick, explain: bool) -> dict:
    out = {"item": pick.item.external_id, "score": round(pick.score, 6), "source": pick.source}
    if explain:
        out["reason"] = pick.reason
    return out


def similar_items(tenant: Tenant, item_external_id: str, k: int,
                  explain: bool = False, user_external_id: str | None = None,
                  api_key: ApiKey | None = None) -> dict | None:
    """Items like the given one (by item vectors; content-based for an item without one).
    None when the tenant has no such item. With `user_external_id`, the request takes part
    in an experiment running on the similar-items surface."""
    started = time.perf_counter()
    _check_k(k)
    # The active version and the rules (and the user, for the impression), one round trip;
    # first, so that a key changed since it was cached learns nothing of the catalogue.
    state = request_state(tenant, user_external_id)
    confirm_key(api_key, state.auth_version, SCOPE)
    item = (Item.objects.filter(tenant=tenant, external_id=item_external_id)
            .only("id", "external_id", "title", "category").first())
    if item is None:
        return None
    assignment, state = assign(tenant, "similar_items", user_external_id, state)
    bundle = load_model(state.version)
    rules = [r for r in tenant_rules(tenant, configured=state.rules)
             if r.kind not in USER_RULE_KINDS]
    selector = Selector(tenant, rules, rule_context(tenant, None), k, {item.pk})
    if assignment is None or not assignment.popularity_only:
        similar_candidates(selector, state.version, bundle, item.pk,
                           label=item.title or item.external_id)
        if not selector.full and bundle is not None:
            content(selector, bundle, [(item.pk, 1.0)])
    if not selector.full:
        popularity(selector, bundle, item.category or None)
    metrics.record_response(tenant.slug, selector, False)
    recommendation_id = uuid.uuid4()
    log_impression(tenant, "similar_items", recommendation_id, user_external_id, state.user,
                   selector, None if state.version is None else state.version.pk, assignment,
                   False, started)
    return {"recommendation_id": str(recommendation_id), "item": item_external_id,
            **(NO_EXPERIMENT if assignment is None else assignment.label()),
            "model_version": _version_json(state.version),
            "rules": [r.name for r in rules],
            "items": [_item_json(p, explain) for p in selector.picks]}


def _version_json(version: ModelVersion | None) -> dict | None:
    return None if version is None else {"id": version.pk, "version": version.version}
