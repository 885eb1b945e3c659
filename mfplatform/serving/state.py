"""What a request starts from: the active version, the user, their history, suppressions,
the tenant's rules and the user's stored vector (one round trip), the session's items, the
version's item-side model data (the process's cache), and the user's vector as served
(stored, or folded in from events the model has not seen, blended with the session)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import psycopg
from django.conf import settings

from mfplatform.catalog.models import EndUser
from mfplatform.registry.models import ModelVersion
from mfplatform.registry.vectors import PARENTS, vector_array
from mfplatform.serving.bundle import ModelBundle, serving_bundle
from mfplatform.serving.cache import serving_cache
from mfplatform.serving.items import items_by_external_id, prepared_cursor
from tenants.models import Tenant

log = logging.getLogger(__name__)

HISTORY_LIMIT = 500

History = list[tuple[int, str, float]]  # (item pk, event type name, unix time), newest first


@dataclass
class RequestState:
    version: ModelVersion | None
    user: EndUser | None
    history: History
    suppressed: set[int]
    rules: list[tuple[str, str, dict, bool]]  # the tenant's (name, kind, params, enabled)
    stored_vector: np.ndarray | None = None  # the user's vector in the version, if any
    # The tenant's running experiments: [surface, experiment id, {plan variant id: its plan's
    # active version id}] (experiments are read here, in the same round trip, so that a start
    # or stop in any process applies to the next request, as a promotion does).
    experiments: list | None = None
    # The tenant's auth_version now: confirms the request's cached API key (tenants.auth).
    auth_version: int | None = None
    # The serving plan's `serving.exploration` options as stored now (a plan change applies
    # to the next request, with no cache to expire), for `version`.
    exploration: dict | None = None

    @property
    def personalised(self) -> bool:
        """Whether the user's own data may shape the answer (anonymous requests may use
        their session; a known user without consent gets nothing personal)."""
        return self.user is None or self.user.consent


# Bytes a version row is charged in the cache (the row, its plan revision's config and its
# dataset version: a few kilobytes; the report, checks and decision are not loaded).
VERSION_BYTES = 16 * 1024

_STATE_SQL = f"""
WITH u AS (SELECT id, consent FROM catalog_enduser
           WHERE tenant_id = %(tenant)s AND external_id = %(user)s),
a AS (SELECT mv.id, p.config -> 'serving' -> 'exploration' AS exploration
        FROM registry_modelversion mv JOIN training_trainingplan p ON p.id = mv.plan_id
       WHERE mv.tenant_id = %(tenant)s AND p.is_serving AND mv.status = 'active'
       ORDER BY mv.id LIMIT 1)
SELECT
  (SELECT id FROM a), (SELECT exploration FROM a),
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
     FROM serving_eligibilityrule r WHERE r.tenant_id = %(tenant)s),
  (SELECT coalesce(json_agg(json_build_array(x.surface, x.id, (
            SELECT coalesce(json_object_agg(v.id, (
                     SELECT a.id FROM registry_modelversion a
                      WHERE a.plan_id = v.plan_id AND a.status = 'active' LIMIT 1)),
                   json_build_object())
              FROM experiments_variant v WHERE v.experiment_id = x.id AND v.kind = 'plan'))),
          '[]')
     FROM experiments_experiment x WHERE x.tenant_id = %(tenant)s AND x.status = 'running'),
  (SELECT auth_version FROM tenants_tenant WHERE id = %(tenant)s)
"""
# The user's vector in one version, by the user's external id. The version is part of the
# text, so that the plan prunes to its partition at planning time whatever the number of
# versions stored (a statement per version, prepared like the candidate search; the state
# statement above is the same text for every tenant).
_VECTOR_SQL = (f"SELECT v.embedding FROM {PARENTS['user']} v "
               "JOIN catalog_enduser u ON u.id = v.user_id "
               "WHERE v.model_version_id = {version} AND u.tenant_id = %(tenant)s "
               "AND u.external_id = %(user)s")


def request_state(tenant: Tenant, user_external_id: str | None) -> RequestState:
    """The active version (and its plan's exploration options), the user, their history,
    suppressions and stored vector, the tenant's rules and its auth_version in one round trip
    (every table is also behind row-level security): the state statement and the vector's,
    pipelined. The vector is read in the version this process served the tenant last; a
    second round trip only when the active version is another (its first request, or after a
    promotion)."""
    cache = serving_cache()
    expected = cache.get(("active", tenant.pk))
    params = {"tenant": tenant.pk, "user": user_external_id or ""}
    with prepared_cursor() as state, psycopg.Cursor(state.connection) as stored:
        state.execute(_STATE_SQL, params, prepare=True)
        with_vector = expected is not None and bool(user_external_id)
        if with_vector:
            stored.execute(_VECTOR_SQL.format(version=int(expected)), params, prepare=True)
        (version_id, exploration, user_id, consent, history, suppressed, rules, experiments,
         auth_version) = state.fetchone()  # the first fetch sends them all
        vector = stored.fetchone() if with_vector else None
    vector = None if vector is None else vector[0]
    if version_id != expected:
        cache.put(("active", tenant.pk), version_id, 64)
        vector = stored_user_vector(version_id, user_id)
    user = None
    if user_id is not None and user_external_id:
        user = EndUser(pk=user_id, tenant=tenant, external_id=user_external_id,
                       consent=consent)
    return RequestState(
        version=cached_version(tenant, version_id), user=user,
        history=[(int(i), name, float(ts)) for i, name, ts in _json(history)],
        suppressed=set(suppressed or ()),
        rules=[(name, kind, params, enabled) for name, kind, params, enabled in _json(rules)],
        stored_vector=vector_array(vector), experiments=_json(experiments),
        auth_version=auth_version, exploration=_json(exploration))


def stored_user_vector(version_id: int | None, user_id: int | None) -> np.ndarray | None:
    """The user's vector in the version (pgvector), None when either is unknown."""
    if version_id is None or user_id is None:
        return None
    with prepared_cursor() as cursor:
        # Prepared once it repeats (psycopg's prepare_threshold: every request of an
        # experiment's other variant), not at once: most tenants run it once per session (a
        # new active version), and a slot per tenant of SERVING_PREPARED_STATEMENTS made
        # three per tenant, 415 at 138 tenants, so that 200 evicted one another.
        cursor.execute(f"SELECT embedding FROM {PARENTS['user']} WHERE model_version_id = "
                       f"{int(version_id)} AND user_id = %(user_pk)s", {"user_pk": user_id})
        row = cursor.fetchone()
    return None if row is None else vector_array(row[0])


def cached_version(tenant: Tenant, version_id: int | None) -> ModelVersion | None:
    """The version's row, from the process's cache (what serving reads of a version never
    changes)."""
    if version_id is None:
        return None

    def load():
        version = (ModelVersion.objects.filter(tenant=tenant, pk=version_id)
                   .select_related("plan_revision", "dataset_version")
                   .defer("report", "checks", "decision").get())
        return version, VERSION_BYTES

    return serving_cache().get_or_load(("version", version_id), load)


def _json(value):
    return json.loads(value) if isinstance(value, str | bytes) else value


@dataclass
class Session:
    items: list[int]  # pks of what the user is looking at now (`recent_items`)
    excluded: set[int]  # never recommended: the request's `exclude` and the session's items
    unknown: list[str]  # external ids of recent_items / exclude that name no item of the tenant


def session_items(tenant: Tenant, recent_items: list[str], exclude: list[str]) -> Session:
    """The request's external ids as item pks (unknown ones are reported, not used)."""
    external = items_by_external_id(tenant, recent_items + exclude)
    session = [external[e] for e in recent_items if e in external]
    # What the user is looking at right now is not worth recommending back.
    return Session(items=session,
                   excluded={external[e] for e in exclude if e in external} | set(session),
                   unknown=list(dict.fromkeys(e for e in recent_items + exclude
                                              if e not in external)))


def load_model(version: ModelVersion | None) -> ModelBundle | None:
    """The active version's model files, or None when they cannot be read: serving goes on
    with the fallbacks that need no model (editorial picks, recent popularity) rather than
    failing every request of the tenant."""
    if version is None:
        return None
    try:
        return serving_bundle(version)
    except Exception as exc:  # noqa: BLE001 - a damaged file (BadZipFile, EOFError, zlib...)
        # must cost the tenant its personalisation, never a 500 on every request.
        log.error("model v%s of tenant %s unreadable, serving without it: %s",
                  version.version, version.tenant_id, exc)
        return None


def newer_than_model(bundle: ModelBundle, history: History) -> bool:
    """Whether the user has events the model has not seen (history is newest first)."""
    return bool(history) and history[0][2] >= bundle.cutoff


def user_vector(bundle: ModelBundle | None, state: RequestState, session: list[int]
                ) -> np.ndarray | None:
    """The user's vector, blended with the session's; None without a factor model or
    anything to build a vector from."""
    if bundle is None or bundle.model is None:
        return None
    vector = (_history_vector(bundle, state.stored_vector, state.history)
              if state.user is not None else None)
    session_vector = fold_in(bundle, [(pk, 1.0) for pk in session]) if session else None
    if session_vector is None:
        return vector
    if vector is None:
        return session_vector
    weight = settings.SERVING_SESSION_WEIGHT
    return (1 - weight) * vector + weight * session_vector


def _history_vector(bundle: ModelBundle, stored: np.ndarray | None, history: History
                    ) -> np.ndarray | None:
    """The model's vector for the user (as stored in Postgres: the factors, then a 1 for
    the item bias of strategies that have one), or one folded in from their history when
    they have events the model has not seen (or no vector)."""
    if stored is not None and not newer_than_model(bundle, history):
        return stored[: bundle.model.n_factors_]
    if not history:
        return None
    return fold_in(bundle, [(pk, bundle.event_weights.get(event_type, 0.0))
                            for pk, event_type, _ts in history])


def fold_in(bundle: ModelBundle, weighted: list[tuple[int, float]]) -> np.ndarray | None:
    """A vector from (item pk, strength) pairs, with the model's item factors fixed; None
    when no positive pair names an item the model knows."""
    pairs = [(pk, w) for pk, w in weighted if w > 0]
    if not pairs:
        return None
    columns = bundle.columns([pk for pk, _ in pairs])
    known = columns >= 0
    if not known.any():
        return None
    strengths = np.array([w for _, w in pairs], dtype=np.float32)[known]
    return bundle.model.fold_in(columns[known], strengths)
