"""The registry's decisions: promotion gates, promote, rollback, retention.

Exactly one active version per plan is enforced by a partial unique index; switching locks the
plan row first, so concurrent promotions queue behind each other and each sees the other's
result. Serving reads the active version in one query, so it never sees none or two.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mfplatform.registry.artifacts import damaged_artifacts, delete_folder
from mfplatform.registry.models import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    PromotionLog,
    RegistryAction,
)
from mfplatform.registry.signals import version_activated
from mfplatform.registry.vectors import drop_vectors
from mfplatform.training.models import TrainingPlan


class RegistryError(Exception):
    """A promotion or rollback that cannot be done; the message says why."""


def _metric_at(metrics: dict, name: str, k: int) -> float | None:
    value = (metrics or {}).get("overall", {}).get(str(k), {}).get(name)
    return None if value is None else float(value)


@dataclass
class Criterion:
    """One promotion criterion applied: the value it measured (stored under `value_name` in
    the decision's values), what that had to reach (under `name` in its thresholds), and why
    it failed (None when it passed)."""

    name: str | None = None
    value_name: str | None = None
    value: float | None = None
    threshold: float | None = None
    reason: str | None = None


def _quality_checks(checks: list[dict]) -> Criterion:
    failed = [c["name"] for c in checks if not c["passed"]]
    return Criterion(reason=f"quality checks failed: {', '.join(failed)}" if failed else None)


def _required_checks(policy: dict, checks: list[dict]) -> Criterion:
    run = {c["name"] for c in checks}
    missing = [name for name in policy["required_checks"] if name not in run]
    return Criterion(reason=f"required checks not run: {', '.join(missing)}" if missing
                     else None)


def _candidate_metric(policy: dict, current: float | None) -> Criterion:
    return Criterion("candidate", "candidate", current, None,
                     f"the report has no {policy['metric']}" if current is None else None)


def _over_popularity(policy: dict, current: float | None, popularity: float | None
                     ) -> Criterion:
    need = policy["min_improvement_over_popularity"]
    threshold = None if popularity is None else popularity * (1 + need)
    reason = None
    if current is not None and threshold is not None and current < threshold:
        reason = (f"{policy['metric']} {current:.4f} is not {need:+.0%} over "
                  f"popularity {popularity:.4f}")
    return Criterion("popularity", "popularity", popularity, threshold, reason)


def _beats_popularity(policy: dict, current: float | None, popularity: float | None
                      ) -> Criterion:
    """The absolute floor, whatever the relative thresholds say: a model that does no better
    than recommending the most popular items (or, with no baseline measured, finds nothing)
    is never promoted."""
    floor = 0.0 if popularity is None else popularity
    reason = None
    if current is not None and current <= floor:
        reason = (f"{policy['metric']} {current:.4f} does not beat popularity {floor:.4f}: "
                  f"a model must, whatever the relative thresholds")
    return Criterion("popularity_floor", "candidate", current, floor, reason)


def _over_active(policy: dict, report: dict, current: float | None,
                 active: ModelVersion) -> Criterion:
    """The active model measured on the candidate's own split when the pipeline could (the
    same test, the same information); else the number from its own, earlier split."""
    metric, k = _metric_and_k(policy)
    previous = (_metric_at(report.get("baselines", {}).get("active"), metric, k)
                if _same_split(report, active)
                else _metric_at((active.report or {}).get("metrics"), metric, k))
    need = policy["min_improvement_over_active"]
    threshold = None if previous is None else previous * (1 + need)
    reason = None
    if threshold is not None and current is not None and current < threshold:
        reason = (f"{policy['metric']} {current:.4f} is not {need:+.0%} over the "
                  f"active v{active.version} {previous:.4f} "
                  f"({_active_measured(report, active)})")
    return Criterion("active", "active", previous, threshold, reason)


def _concentration(policy: dict, report: dict) -> Criterion:
    _metric, k = _metric_and_k(policy)
    share = report.get("metrics", {}).get("overall", {}).get(str(k), {}).get("top1pct_share")
    limit = policy["max_popularity_concentration"]
    reason = None
    if share is not None and share > limit:
        reason = (f"popularity concentration {share:.3f} (share of slots taken "
                  f"by the top 1% of items) exceeds {limit}")
    return Criterion("top1pct_share", "top1pct_share", share, limit, reason)


def _same_split(report: dict, active: ModelVersion) -> bool:
    return (report.get("active_baseline") or {}).get("model_version") == active.pk


def _active_measured(report: dict, active: ModelVersion) -> str:
    return "on the candidate's split" if _same_split(report, active) else \
        "on its own earlier split"


def _metric_and_k(policy: dict) -> tuple[str, int]:
    metric, _, k_text = policy["metric"].partition("@")
    return metric, int(k_text)


def _fallback_gate(policy: dict, active: ModelVersion | None) -> dict:
    reasons = []
    if active is not None and active.kind == ModelKind.MF:
        reasons.append("a matrix-factorization model is active; a fallback model does not "
                       "replace it automatically")
    return {"verdict": "fail" if reasons else "pass", "metric": policy["metric"],
            "values": {}, "thresholds": {}, "policy": dict(policy),
            "reasons": reasons or ["fallback model for a small dataset"]}


def gate(version: ModelVersion, active: ModelVersion | None) -> dict:
    """The promotion policy of the version's plan revision, applied with numbers side by
    side. Returns {"verdict": "pass"|"fail", "metric", "values": {candidate, popularity,
    active, top1pct_share}, "thresholds": {what each value had to reach}, "policy",
    "reasons": [...]}."""
    policy = version.plan_revision.config["promotion"]
    if version.kind == ModelKind.FALLBACK:
        return _fallback_gate(policy, active)
    report = version.report or {}
    checks = version.checks or []
    metric, k = _metric_and_k(policy)
    current = _metric_at(report.get("metrics"), metric, k)
    popularity = _metric_at(report.get("baselines", {}).get("popularity"), metric, k)
    over_popularity = _over_popularity(policy, current, popularity)
    criteria = [_quality_checks(checks), _required_checks(policy, checks),
                _candidate_metric(policy, current), over_popularity]
    if over_popularity.reason is None:  # else the relative threshold already says it
        criteria.append(_beats_popularity(policy, current, popularity))
    active_mf = active is not None and active.kind == ModelKind.MF
    if active_mf:
        criteria.append(_over_active(policy, report, current, active))
    criteria.append(_concentration(policy, report))

    decision = _compose(policy, criteria)
    if decision["verdict"] == "pass":
        decision["reasons"] = [f"{policy['metric']} {current:.4f} passes every gate"]
    decision["active_measured"] = _active_measured(report, active) if active_mf else None
    return decision


def _compose(policy: dict, criteria: list[Criterion]) -> dict:
    """The decision: every criterion's value and threshold side by side, and the reasons of
    those that failed (any failure fails the candidate)."""
    reasons = [c.reason for c in criteria if c.reason]
    return {"verdict": "fail" if reasons else "pass", "metric": policy["metric"],
            "values": {c.value_name: c.value for c in criteria if c.value_name},
            "thresholds": {c.name: c.threshold for c in criteria
                           if c.name and c.threshold is not None},
            "policy": dict(policy), "reasons": reasons}


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
    """Why the version cannot be made active, or None when it can. A version the promotion
    gate rejected (its quality checks passed) can still be made active by an operator's
    override with a reason (promote with override); one that failed its checks cannot."""
    if overridable(version):
        return (f"v{version.version} was rejected by the promotion gate; an operator can "
                f"override the rejection with a reason")
    if version.status not in (ModelStatus.CANDIDATE, ModelStatus.RETIRED):
        return (f"v{version.version} is {version.status}; only a candidate or a retired "
                f"version can be made active")
    if version.kind == ModelKind.MF and version.vectors_dropped_at is not None:
        return f"v{version.version}'s vectors were dropped by retention"
    return None


def overridable(version: ModelVersion) -> bool:
    """Rejected by the gate's criteria, not by a failed quality check: an operator may
    promote it over the gate's decision (promote with override)."""
    return (version.status == ModelStatus.REJECTED
            and (version.decision or {}).get("verdict") == "fail"
            and not any(not c["passed"] for c in version.checks or []))


def _switch(plan_id: int, target: ModelVersion, action: str, actor: str, reason: str,
            actor_user=None, override: bool = False) -> PromotionLog:
    """Make `target` the plan's active version: retire the current one and activate the
    target in the caller's transaction, with the plan row locked. Readers see the old state
    or the new one, never none or two active (and the partial unique index refuses two).
    `override`: the target is a version the promotion gate rejected (see promote)."""
    _lock_plan(plan_id)
    target.refresh_from_db()
    if target.plan_id != plan_id:
        raise RegistryError("the version belongs to another plan")
    if override:
        reason = _override_gate(target, actor, reason)
    blocker = promotion_blocker(target)
    if blocker is not None:
        raise RegistryError(blocker)
    damage = damaged_artifacts(target)
    if damage is not None:  # serving it would answer from fallbacks only: refuse
        raise RegistryError(f"v{target.version}'s files are damaged ({damage}); it cannot be "
                            f"made active: train a new version")
    current = ModelVersion.objects.filter(plan_id=plan_id, status=ModelStatus.ACTIVE).first()
    now = timezone.now()
    if current is not None:
        current.status = ModelStatus.RETIRED
        current.retired_at = now
        current.save(update_fields=["status", "retired_at"])
    target.status = ModelStatus.ACTIVE
    target.activated_at = now
    target.save(update_fields=["status", "activated_at"])
    transaction.on_commit(lambda: version_activated.send(sender=ModelVersion, version=target))
    return PromotionLog.objects.create(
        tenant=target.tenant, plan_id=plan_id, action=action, from_version=current,
        to_version=target, actor=actor, actor_user=actor_user, reason=reason)


def _require_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise RegistryError("a reason is required")
    return reason.strip()


def promote(version: ModelVersion, actor: str, reason: str, actor_user=None,
            action: str = RegistryAction.PROMOTE, override: bool = False) -> PromotionLog:
    """Make a candidate (or a retired version) the plan's active version. With `override`,
    a person makes a version the promotion gate rejected active; the reason is logged as the
    override's and the version's decision records who overrode it, when and why."""
    reason = _require_reason(reason)
    with transaction.atomic():
        return _switch(version.plan_id, version, action, actor, reason, actor_user, override)


def _override_gate(version: ModelVersion, actor: str, reason: str) -> str:
    """Check that `version` (locked plan, fresh row) is one the gate rejected and record the
    override in its decision; returns the audit log's reason."""
    decision = version.decision or {}
    if version.status != ModelStatus.REJECTED or decision.get("verdict") != "fail":
        raise RegistryError(f"v{version.version} was not rejected by the promotion gate; "
                            f"there is nothing to override")
    failed = [c["name"] for c in version.checks or [] if not c["passed"]]
    if failed:  # broken factors (NaN, collapsed vectors) would break serving, not only rank
        raise RegistryError(f"v{version.version} failed quality checks ({', '.join(failed)}); "
                            f"only a promotion gate rejection can be overridden")
    version.decision = {**decision, "override": {
        "actor": actor, "reason": reason, "at": timezone.now().isoformat()}}
    version.status = ModelStatus.CANDIDATE
    version.save(update_fields=["decision", "status"])
    return f"override of the gate's rejection ({'; '.join(decision.get('reasons', []))}): " \
           f"{reason}"


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
                transaction.on_commit(lambda f=version.artifact: delete_folder(f))
        dropped.append(version)
    return dropped
