"""Serving's side of online evaluation: which experiment variant a request falls in (and so
which model version serves it), and the impression of what was shown.

The running experiment's spec is cached in the process's serving cache by experiment id; the
request state (state.py) says in its one round trip which experiments run now and what each
plan variant's plan has active, so a start, a stop or a promotion applies to the next request
in every process, as for active versions.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

from mfplatform.catalog.models import EndUser
from mfplatform.experiments.assignment import (
    ExperimentSpec,
    VariantSpec,
    load_spec,
    served_version_id,
)
from mfplatform.experiments.impressions import ImpressionRow, record
from mfplatform.experiments.models import VariantKind
from mfplatform.serving.cache import serving_cache
from mfplatform.serving.selector import Selector
from mfplatform.serving.state import RequestState, cached_version, stored_user_vector
from tenants.models import Tenant


@dataclass(frozen=True)
class Assignment:
    experiment: ExperimentSpec
    variant: VariantSpec

    @property
    def popularity_only(self) -> bool:
        return self.variant.kind == VariantKind.POPULARITY

    def label(self) -> dict:
        return {"experiment": {"id": self.experiment.pk, "name": self.experiment.name},
                "variant": self.variant.name}


NO_EXPERIMENT = {"experiment": None, "variant": None}


def assign(tenant: Tenant, surface: str, user_external_id: str | None,
           state: RequestState) -> tuple[Assignment | None, RequestState]:
    """The request's variant (None: no experiment runs on the surface, or the request names
    no user to assign), and the state to serve it from: the variant's model version, and the
    user's stored vector in it."""
    running = next((e for e in state.experiments or () if e[0] == surface), None)
    if running is None or not user_external_id:
        return None, state
    _surface, experiment_id, plan_active = running
    spec = serving_cache().get_or_load(("experiment", experiment_id),
                                       lambda: load_spec(tenant, experiment_id))
    assignment = Assignment(spec, spec.variant_for(user_external_id))
    if assignment.popularity_only:
        return assignment, replace(state, stored_vector=None)
    version_id = served_version_id(assignment.variant, plan_active or {})
    current = None if state.version is None else state.version.pk
    if version_id is None or version_id == current:
        return assignment, state
    version = cached_version(tenant, version_id)
    return assignment, replace(state, version=version, stored_vector=stored_user_vector(
        version_id, None if state.user is None else state.user.pk))


def log_impression(tenant: Tenant, surface: str, recommendation_id: uuid.UUID,
                   user_external_id: str | None, user: EndUser | None, selector: Selector,
                   version_id: int | None, assignment: Assignment | None, fallback: bool,
                   started: float) -> None:
    record(ImpressionRow(
        tenant_id=tenant.pk, recommendation_id=recommendation_id, surface=surface,
        user_external_id=user_external_id or "", user_id=None if user is None else user.pk,
        items=[p.item.id for p in selector.picks], sources=[p.source for p in selector.picks],
        model_version_id=version_id,
        experiment_id=None if assignment is None else assignment.experiment.pk,
        variant="" if assignment is None else assignment.variant.name,
        latency_ms=(time.perf_counter() - started) * 1000.0, fallback=fallback))
