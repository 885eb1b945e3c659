"""Sticky assignment of a user to a variant: a hash of the experiment's salt and the user's
id, mapped to [0, 1) and cut by the variants' cumulative shares. The same user lands in the
same variant on every request and in every process, with no stored assignment; a new salt
(a new experiment) reshuffles everyone."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mfplatform.experiments.models import Experiment, VariantKind

# Bytes a definition is charged in serving's cache (a handful of small rows).
DEFINITION_BYTES = 2048


@dataclass(frozen=True)
class VariantSpec:
    name: str
    kind: str
    model_version_id: int | None
    plan_id: int | None
    share: float
    is_control: bool
    pk: int


@dataclass(frozen=True)
class ExperimentSpec:
    """What serving needs of a running experiment (fixed while it runs)."""

    pk: int
    name: str
    surface: str
    salt: str
    variants: tuple[VariantSpec, ...]

    def variant_for(self, user_external_id: str) -> VariantSpec:
        point = bucket(self.salt, user_external_id)
        total = 0.0
        for variant in self.variants:
            total += variant.share
            if point < total:
                return variant
        return self.variants[-1]  # shares sum to 1 up to rounding


def bucket(salt: str, user_external_id: str) -> float:
    """A uniform point in [0, 1) for the user in this experiment."""
    digest = hashlib.blake2b(f"{salt}:{user_external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def experiment_spec(experiment: Experiment) -> ExperimentSpec:
    variants = tuple(VariantSpec(v.name, v.kind, v.model_version_id, v.plan_id, v.share,
                                 v.is_control, v.pk)
                     for v in experiment.variants.all())
    return ExperimentSpec(experiment.pk, experiment.name, experiment.surface, experiment.salt,
                          variants)


def load_spec(tenant, experiment_id: int) -> tuple[ExperimentSpec, int]:
    """The running experiment's spec and its size, for serving's cache."""
    experiment = (Experiment.objects.filter(tenant=tenant, pk=experiment_id)
                  .prefetch_related("variants").get())
    return experiment_spec(experiment), DEFINITION_BYTES


def served_version_id(variant: VariantSpec, plan_active: dict[str, int | None]
                      ) -> int | None:
    """The model version the variant serves: its own, or its plan's active one now (None for
    the popularity control)."""
    if variant.kind == VariantKind.VERSION:
        return variant.model_version_id
    if variant.kind == VariantKind.PLAN:
        return plan_active.get(str(variant.pk))
    return None

