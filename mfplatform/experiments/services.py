"""Experiments of a tenant: create with their variants, start, stop, promote the winner.
Every function takes the tenant explicitly."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from mfplatform.experiments.models import (
    Experiment,
    ExperimentStatus,
    Surface,
    Variant,
    VariantKind,
)
from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.registry.services import RegistryError, active_version, promote
from mfplatform.training.models import TrainingPlan
from tenants.models import Tenant

SHARE_TOLERANCE = 1e-6


class ExperimentError(ValueError):
    """Bad input or a transition that cannot happen; `field` names what (None: the state)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class VariantInput:
    name: str
    kind: str
    share: float
    model_version: int | None = None
    plan: int | None = None
    is_control: bool = False


def _variant(tenant: Tenant, position: int, spec: VariantInput) -> Variant:
    where = f"variants.{position}"
    variant = Variant(tenant=tenant, name=spec.name, kind=spec.kind, share=spec.share,
                      is_control=spec.is_control)
    if spec.kind == VariantKind.VERSION:
        version = ModelVersion.objects.filter(tenant=tenant, pk=spec.model_version).first() \
            if spec.model_version is not None else None
        if version is None:
            raise ExperimentError(f"{where}.model_version", "no such model version")
        if (version.kind != ModelKind.MF or version.vectors_dropped_at is not None
                or version.status in (ModelStatus.FAILED, ModelStatus.REJECTED)):
            raise ExperimentError(f"{where}.model_version",
                                  f"v{version.version} cannot serve (a matrix-factorization "
                                  "version with its vectors, not failed or rejected)")
        variant.model_version = version
    elif spec.kind == VariantKind.PLAN:
        plan = TrainingPlan.objects.filter(tenant=tenant, pk=spec.plan).first() \
            if spec.plan is not None else None
        if plan is None:
            raise ExperimentError(f"{where}.plan", "no such plan")
        variant.plan = plan
    elif spec.kind != VariantKind.POPULARITY:
        raise ExperimentError(f"{where}.kind", f"one of {', '.join(VariantKind.values)}")
    return variant


def _check_variants(variants: list[VariantInput]) -> None:
    if len(variants) < 2:
        raise ExperimentError("variants", "at least two variants")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ExperimentError("variants", "variant names must differ")
    for position, v in enumerate(variants):
        if not (math.isfinite(v.share) and 0 < v.share <= 1):
            raise ExperimentError(f"variants.{position}.share", "a share in (0, 1]")
    if abs(sum(v.share for v in variants) - 1.0) > SHARE_TOLERANCE:
        raise ExperimentError("variants", "the shares must sum to 1")
    controls = sum(v.is_control for v in variants)
    if controls > 1:
        raise ExperimentError("variants", "at most one control variant")


def create_experiment(tenant: Tenant, name: str, variants: list[VariantInput],
                      surface: str = Surface.RECOMMENDATIONS, click_event: str = "click",
                      min_samples: int = 1000, alpha: float = 0.05) -> Experiment:
    """A draft experiment; the first variant is the control unless one says it is."""
    if surface not in Surface.values:
        raise ExperimentError("surface", f"one of {', '.join(Surface.values)}")
    _check_variants(variants)
    if not any(v.is_control for v in variants):
        variants[0].is_control = True
    with transaction.atomic():
        if Experiment.objects.filter(tenant=tenant, name=name).exists():
            raise ExperimentError("name", f"an experiment named {name!r} exists")
        rows = [_variant(tenant, position, v) for position, v in enumerate(variants)]
        experiment = Experiment.objects.create(tenant=tenant, name=name, surface=surface,
                                               click_event=click_event,
                                               min_samples=min_samples, alpha=alpha)
        for row in rows:
            row.experiment = experiment
        Variant.objects.bulk_create(rows)
    return experiment


def start_experiment(tenant: Tenant, experiment: Experiment) -> Experiment:
    """Draft -> running. Another experiment running on the same surface is a conflict (the
    database's partial unique index decides, so two starts at once cannot both win)."""
    if experiment.status != ExperimentStatus.DRAFT:
        raise ExperimentError(None, f"experiment is {experiment.status}; only a draft starts")
    try:
        with transaction.atomic():
            updated = Experiment.objects.filter(
                tenant=tenant, pk=experiment.pk, status=ExperimentStatus.DRAFT).update(
                status=ExperimentStatus.RUNNING, started_at=timezone.now())
    except IntegrityError as exc:
        raise ExperimentError(None, f"another experiment is running on {experiment.surface}"
                              ) from exc
    if not updated:
        raise ExperimentError(None, "experiment is no longer a draft")
    experiment.refresh_from_db()
    return experiment


def stop_experiment(tenant: Tenant, experiment: Experiment) -> Experiment:
    if experiment.status != ExperimentStatus.RUNNING:
        raise ExperimentError(None, f"experiment is {experiment.status}; only a running one "
                                    "stops")
    Experiment.objects.filter(tenant=tenant, pk=experiment.pk).update(
        status=ExperimentStatus.STOPPED, stopped_at=timezone.now())
    experiment.refresh_from_db()
    return experiment


def variant_version(tenant: Tenant, variant: Variant) -> ModelVersion | None:
    """The version a variant serves now (None for the popularity control)."""
    if variant.kind == VariantKind.VERSION:
        return variant.model_version
    if variant.kind == VariantKind.PLAN:
        return active_version(variant.plan)
    return None


def promote_variant(tenant: Tenant, experiment: Experiment, variant_name: str, actor: str,
                    reason: str, actor_user=None):
    """Make the variant's model version active through the registry's promote (audited
    there, the experiment named in the reason)."""
    if not reason or not reason.strip():
        raise ExperimentError("reason", "a reason is required")
    variant = experiment.variants.filter(tenant=tenant, name=variant_name).first()
    if variant is None:
        raise ExperimentError("variant", f"no variant {variant_name!r}")
    version = variant_version(tenant, variant)
    if version is None:
        raise ExperimentError("variant", "the popularity control has no model to promote")
    if version.status == ModelStatus.ACTIVE:
        raise ExperimentError("variant", f"v{version.version} is already active")
    try:
        return promote(version, actor=actor, actor_user=actor_user,
                       reason=f"experiment {experiment.name!r}, variant {variant.name}: "
                              f"{reason}")
    except RegistryError as exc:
        raise ExperimentError("variant", str(exc)) from exc
