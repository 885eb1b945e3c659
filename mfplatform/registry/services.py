"""The registry's decisions: promotion gates, promote, rollback, retention.

Exactly one active version per plan is enforced by a partial unique index; switching locks the
plan row first, so concurrent promotions queue behind each other and each sees the other's
result. Serving reads the active version in one query, so it never sees none or two.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mfplatform.registry.models import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    PromotionLog,
    RegistryAction,
)
from mfplatform.registry.vectors import drop_vectors
from mfplatform.training.models import TrainingPlan


class RegistryError(Exception):
    """A promotion or rollback that cannot be done; the message says why."""


def _metric_at(metrics: dict, name: str, k: int) -> float | None:
    value = (metrics or {}).get("overall", {}).get(str(k), {}).get(name)
    return None if value is None else float(value)


def gate(version: ModelVersion, active: ModelVersion | None) -> dict:
    """The promotion policy of the version's plan revision, applied with numbers side by
    side. Returns {"verdict": "pass"|"fail", "metric", "values": {...}, "reasons": [...]}."""
    policy = version.plan_revision.config["promotion"]
    metric, _, k_text = policy["metric"].partition("@")
    k = int(k_text)
    reasons: list[str] = []
    values: dict[str, float | None] = {}
    if version.kind == ModelKind.FALLBACK:
        if active is not None and active.kind == ModelKind.MF:
            reasons.append("a matrix-factorization model is active; a fallback model does not "
                           "replace it automatically")
        return {"verdict": "fail" if reasons else "pass", "metric": policy["metric"],
                "values": values, "reasons": reasons or ["fallback model for a small dataset"]}

    report = version.report or {}
    checks = version.checks or []
    failed_checks = [c["name"] for c in checks if not c["passed"]]
    if failed_checks:
        reasons.append(f"quality checks failed: {', '.join(failed_checks)}")
    missing = [name for name in policy["required_checks"]
               if name not in {c["name"] for c in checks}]
    if missing:
        reasons.append(f"required checks not run: {', '.join(missing)}")

    current = _metric_at(report.get("metrics"), metric, k)
    values["candidate"] = current
    popularity = _metric_at(report.get("baselines", {}).get("popularity"), metric, k)
    values["popularity"] = popularity
    if current is None:
        reasons.append(f"the report has no {policy['metric']}")
    else:
        need = policy["min_improvement_over_popularity"]
        if popularity is not None and current < popularity * (1 + need):
            reasons.append(f"{policy['metric']} {current:.4f} is not {need:+.0%} over "
                           f"popularity {popularity:.4f}")
        if active is not None and active.kind == ModelKind.MF:
            previous = _metric_at((active.report or {}).get("metrics"), metric, k)
            values["active"] = previous
            need = policy["min_improvement_over_active"]
            if previous is not None and current < previous * (1 + need):
                reasons.append(f"{policy['metric']} {current:.4f} is not {need:+.0%} over the "
                               f"active v{active.version} {previous:.4f}")
    concentration = (report.get("metrics", {}).get("overall", {}).get(str(k), {})
                     .get("top1pct_share"))
    values["top1pct_share"] = concentration
    if concentration is not None and concentration > policy["max_popularity_concentration"]:
        reasons.append(f"popularity concentration {concentration:.3f} (share of slots taken "
                       f"by the top 1% of items) exceeds {policy['max_popularity_concentration']}")
    verdict = "fail" if reasons else "pass"
    if not reasons:
        reasons.append(f"{policy['metric']} {current:.4f} passes every gate")
    return {"verdict": verdict, "metric": policy["metric"], "values": values,
            "reasons": reasons}


def decide_promotion(version: ModelVersion) -> ModelVersion:
    """At the end of a run: store the gate's decision; reject, or promote when the plan says
    so (auto-promotion), or leave the candidate for a person."""
    if version.status != ModelStatus.CANDIDATE:
        return version
    active = active_version(version.plan)
    decision = gate(version, active)
    auto = version.plan_revision.config["promotion"]["auto_promote"]
    decision["auto_promote"] = auto
    version.decision = decision
    version.save(update_fields=["decision"])
    if decision["verdict"] == "fail":
        version.status = ModelStatus.REJECTED
        version.save(update_fields=["status"])
        PromotionLog.objects.create(
            tenant=version.tenant, plan=version.plan, action=RegistryAction.REJECT,
            from_version=active, to_version=version, actor="system",
            reason="; ".join(decision["reasons"]))
    elif auto:
        promote(version, actor="system", reason="auto-promotion: " + decision["reasons"][0],
                action=RegistryAction.AUTO_PROMOTE)
    return version


def active_version(plan: TrainingPlan) -> ModelVersion | None:
    return ModelVersion.objects.filter(plan=plan, status=ModelStatus.ACTIVE).first()


def _switch(plan_id: int, target: ModelVersion, action: str, actor: str, reason: str,
            actor_user=None) -> PromotionLog:
    TrainingPlan.objects.select_for_update().get(pk=plan_id)  # serialises switches per plan
    target.refresh_from_db()
    current = ModelVersion.objects.filter(plan_id=plan_id, status=ModelStatus.ACTIVE).first()
    if current is not None and current.pk == target.pk:
        raise RegistryError(f"v{target.version} is already active")
    now = timezone.now()
    if current is not None:
        current.status = ModelStatus.RETIRED
        current.retired_at = now
        current.save(update_fields=["status", "retired_at"])
    target.status = ModelStatus.ACTIVE
    target.activated_at = now
    target.save(update_fields=["status", "activated_at"])
    if settings.SERVING_PRECOMPUTE and target.kind == ModelKind.MF:
        from mfplatform.serving.tasks import precompute

        transaction.on_commit(lambda: precompute.delay(target.tenant_id, target.pk))
    return PromotionLog.objects.create(
        tenant=target.tenant, plan_id=plan_id, action=action, from_version=current,
        to_version=target, actor=actor, actor_user=actor_user, reason=reason)


def promote(version: ModelVersion, actor: str, reason: str, actor_user=None,
            action: str = RegistryAction.PROMOTE) -> PromotionLog:
    if not reason or not reason.strip():
        raise RegistryError("a reason is required")
    with transaction.atomic():
        version.refresh_from_db()
        if version.status not in (ModelStatus.CANDIDATE, ModelStatus.RETIRED):
            raise RegistryError(f"v{version.version} is {version.status}; only a candidate or "
                                f"a retired version can be promoted")
        if version.kind == ModelKind.MF and version.vectors_dropped_at is not None:
            raise RegistryError(f"v{version.version}'s vectors were dropped by retention")
        return _switch(version.plan_id, version, action, actor, reason, actor_user)


def rollback(version: ModelVersion, actor: str, reason: str, actor_user=None) -> PromotionLog:
    """`version` is the plan's active version: make the previously active one active again."""
    if not reason or not reason.strip():
        raise RegistryError("a reason is required")
    with transaction.atomic():
        TrainingPlan.objects.select_for_update().get(pk=version.plan_id)
        version.refresh_from_db()
        if version.status != ModelStatus.ACTIVE:
            raise RegistryError(f"v{version.version} is not the active version")
        previous = (PromotionLog.objects
                    .filter(plan_id=version.plan_id, to_version=version,
                            action__in=[RegistryAction.PROMOTE, RegistryAction.AUTO_PROMOTE,
                                        RegistryAction.ROLLBACK],
                            from_version__isnull=False)
                    .select_related("from_version").first())
        target = previous.from_version if previous is not None else None
        if target is None:
            raise RegistryError("there is no previously active version to roll back to")
        if target.vectors_dropped_at is not None:
            raise RegistryError(f"v{target.version}'s vectors were dropped by retention")
        return _switch(version.plan_id, target, RegistryAction.ROLLBACK, actor, reason,
                       actor_user)


def apply_retention(plan: TrainingPlan, keep: int) -> list[ModelVersion]:
    """Drop the vectors (and their index) of all but the newest `keep` versions of the plan
    with vectors; the active version always keeps its own. Metadata and reports stay."""
    with_vectors = list(ModelVersion.objects.filter(
        plan=plan, kind=ModelKind.MF, vectors_dropped_at__isnull=True).order_by("-version"))
    dropped = []
    for version in with_vectors[keep:]:
        if version.status == ModelStatus.ACTIVE:
            continue
        with transaction.atomic():
            drop_vectors(version)
            version.vectors_dropped_at = timezone.now()
            version.save(update_fields=["vectors_dropped_at"])
        dropped.append(version)
    return dropped
