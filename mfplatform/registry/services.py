"""The registry's decisions: promotion gates, promote, rollback, retention.

Exactly one active version per plan is enforced by a partial unique index; switching locks the
plan row first, so concurrent promotions queue behind each other and each sees the other's
result. Serving reads the active version in one query, so it never sees none or two.
"""

from __future__ import annotations

import shutil

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
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
    side. Returns {"verdict": "pass"|"fail", "metric", "values": {candidate, popularity,
    active, top1pct_share}, "thresholds": {what each value had to reach}, "policy",
    "reasons": [...]}."""
    policy = version.plan_revision.config["promotion"]
    metric, _, k_text = policy["metric"].partition("@")
    k = int(k_text)
    reasons: list[str] = []
    values: dict[str, float | None] = {}
    thresholds: dict[str, float | None] = {}
    if version.kind == ModelKind.FALLBACK:
        if active is not None and active.kind == ModelKind.MF:
            reasons.append("a matrix-factorization model is active; a fallback model does not "
                           "replace it automatically")
        return {"verdict": "fail" if reasons else "pass", "metric": policy["metric"],
                "values": values, "thresholds": thresholds, "policy": dict(policy),
                "reasons": reasons or ["fallback model for a small dataset"]}

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
    active_measured = None
    popularity = _metric_at(report.get("baselines", {}).get("popularity"), metric, k)
    values["popularity"] = popularity
    need = policy["min_improvement_over_popularity"]
    if popularity is not None:
        thresholds["popularity"] = popularity * (1 + need)
    if current is None:
        reasons.append(f"the report has no {policy['metric']}")
    elif popularity is not None and current < popularity * (1 + need):
        reasons.append(f"{policy['metric']} {current:.4f} is not {need:+.0%} over "
                       f"popularity {popularity:.4f}")
    if active is not None and active.kind == ModelKind.MF:
        # The active model measured on the candidate's own split when the pipeline could (the
        # same test, the same information); else the number from its own, earlier split.
        same_split = (report.get("active_baseline") or {}).get("model_version") == active.pk
        previous = (_metric_at(report.get("baselines", {}).get("active"), metric, k)
                    if same_split else _metric_at((active.report or {}).get("metrics"), metric, k))
        values["active"] = previous
        active_measured = ("on the candidate's split" if same_split
                           else "on its own earlier split")
        need = policy["min_improvement_over_active"]
        if previous is not None:
            thresholds["active"] = previous * (1 + need)
            if current is not None and current < previous * (1 + need):
                reasons.append(f"{policy['metric']} {current:.4f} is not {need:+.0%} over the "
                               f"active v{active.version} {previous:.4f} ({active_measured})")
    concentration = (report.get("metrics", {}).get("overall", {}).get(str(k), {})
                     .get("top1pct_share"))
    values["top1pct_share"] = concentration
    thresholds["top1pct_share"] = policy["max_popularity_concentration"]
    if concentration is not None and concentration > policy["max_popularity_concentration"]:
        reasons.append(f"popularity concentration {concentration:.3f} (share of slots taken "
                       f"by the top 1% of items) exceeds {policy['max_popularity_concentration']}")
    verdict = "fail" if reasons else "pass"
    if not reasons:
        reasons.append(f"{policy['metric']} {current:.4f} passes every gate")
    return {"verdict": verdict, "metric": policy["metric"], "values": values,
            "thresholds": thresholds, "policy": dict(policy), "reasons": reasons,
            "active_measured": active_measured}


def _lock_plan(plan_id: int) -> TrainingPlan:
    """Lock the plan row for the rest of the transaction: every switch, gate decision and
    vector drop of a plan queues behind the one before it."""
    return TrainingPlan.objects.select_for_update().get(pk=plan_id)


def decide_promotion(version: ModelVersion) -> ModelVersion:
    """At the end of a run: store the gate's decision; reject, or promote when the plan says
    so (auto-promotion), or leave the candidate for a person. The gate reads the active
    version with the plan locked, so two runs finishing together are judged one after the
    other, the second against whatever the first made active."""
    with transaction.atomic():
        _lock_plan(version.plan_id)
        version.refresh_from_db()
        if version.status != ModelStatus.CANDIDATE:
            return version
        active = active_version(version.plan)
        decision = gate(version, active)
        auto = version.plan_revision.config["promotion"]["auto_promote"]
        decision["auto_promote"] = auto
        decision["active_version"] = None if active is None else active.version
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
            _switch(version.plan_id, version, RegistryAction.AUTO_PROMOTE, actor="system",
                    reason="auto-promotion: " + decision["reasons"][0])
    return version


def active_version(plan: TrainingPlan) -> ModelVersion | None:
    return ModelVersion.objects.filter(plan=plan, status=ModelStatus.ACTIVE).first()


def previous_active(version: ModelVersion) -> ModelVersion | None:
    """The version that was active right before `version` became active (what a rollback of
    `version` restores), from the audit log."""
    entry = (PromotionLog.objects
             .filter(plan_id=version.plan_id, to_version=version,
                     action__in=[RegistryAction.PROMOTE, RegistryAction.AUTO_PROMOTE,
                                 RegistryAction.ROLLBACK],
                     from_version__isnull=False)
             .select_related("from_version").first())
    return None if entry is None else entry.from_version


def history(version: ModelVersion):
    """The audit log entries that name the version (as the one switched from or to)."""
    return (PromotionLog.objects.filter(tenant_id=version.tenant_id)
            .filter(Q(to_version=version) | Q(from_version=version))
            .select_related("from_version", "to_version"))


def promotion_blocker(version: ModelVersion) -> str | None:
    """Why the version cannot be made active, or None when it can (there is no override: a
    rejected or failed version stays out of service)."""
    if version.status not in (ModelStatus.CANDIDATE, ModelStatus.RETIRED):
        return (f"v{version.version} is {version.status}; only a candidate or a retired "
                f"version can be made active")
    if version.kind == ModelKind.MF and version.vectors_dropped_at is not None:
        return f"v{version.version}'s vectors were dropped by retention"
    return None


def _switch(plan_id: int, target: ModelVersion, action: str, actor: str, reason: str,
            actor_user=None) -> PromotionLog:
    """Make `target` the plan's active version: retire the current one and activate the
    target in the caller's transaction, with the plan row locked. Readers see the old state
    or the new one, never none or two active (and the partial unique index refuses two)."""
    _lock_plan(plan_id)
    target.refresh_from_db()
    if target.plan_id != plan_id:
        raise RegistryError("the version belongs to another plan")
    blocker = promotion_blocker(target)
    if blocker is not None:
        raise RegistryError(blocker)
    current = ModelVersion.objects.filter(plan_id=plan_id, status=ModelStatus.ACTIVE).first()
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


def _require_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise RegistryError("a reason is required")
    return reason.strip()


def promote(version: ModelVersion, actor: str, reason: str, actor_user=None,
            action: str = RegistryAction.PROMOTE) -> PromotionLog:
    """Make a candidate (or a retired version) the plan's active version."""
    reason = _require_reason(reason)
    with transaction.atomic():
        return _switch(version.plan_id, version, action, actor, reason, actor_user)


def rollback(version: ModelVersion, actor: str, reason: str, actor_user=None) -> PromotionLog:
    """`version` is the plan's active version: make the previously active one active again."""
    reason = _require_reason(reason)
    with transaction.atomic():
        _lock_plan(version.plan_id)
        version.refresh_from_db()
        if version.status != ModelStatus.ACTIVE:
            raise RegistryError(f"v{version.version} is not the active version")
        target = previous_active(version)
        if target is None:
            raise RegistryError("there is no previously active version to roll back to")
        return _switch(version.plan_id, target, RegistryAction.ROLLBACK, actor, reason,
                       actor_user)


def apply_retention(plan: TrainingPlan, keep: int | None = None) -> list[ModelVersion]:
    """Drop the vectors (rows and HNSW index) and model files of every matrix-factorization
    version of the plan older than the newest `keep` (default settings.MODEL_RETENTION_KEEP)
    that had vectors. The active version and the one a rollback would restore always keep
    theirs; metadata, reports and the audit log stay forever. Each drop runs with the plan
    locked, so it never races a promotion of the same version."""
    keep = settings.MODEL_RETENTION_KEEP if keep is None else keep
    versions = list(ModelVersion.objects.filter(plan=plan, kind=ModelKind.MF)
                    .exclude(status=ModelStatus.FAILED).order_by("-version"))
    stale = [v for v in versions[max(int(keep), 0):] if v.vectors_dropped_at is None]
    # A failed version's vectors went with its failure; record it so nothing looks for them.
    stale += list(ModelVersion.objects.filter(plan=plan, kind=ModelKind.MF,
                                              status=ModelStatus.FAILED,
                                              vectors_dropped_at__isnull=True))
    dropped = []
    for version in stale:
        with transaction.atomic():
            _lock_plan(plan.pk)
            version.refresh_from_db()
            active = active_version(plan)
            protected = set() if active is None else {active.pk}
            rollback_target = None if active is None else previous_active(active)
            if rollback_target is not None:
                protected.add(rollback_target.pk)
            if version.pk in protected or version.vectors_dropped_at is not None:
                continue
            drop_vectors(version)
            version.vectors_dropped_at = timezone.now()
            version.save(update_fields=["vectors_dropped_at"])
            if version.artifact:  # its model files can never serve again either
                folder = default_storage.path(version.artifact)
                transaction.on_commit(lambda f=folder: shutil.rmtree(f, ignore_errors=True))
        dropped.append(version)
    return dropped
