from mfplatform.registry.models import ModelStatus
from tests.cross_tenant import B_MARKER, B_SECRET, Request, register
from tests.factories import make_model_version, make_plan


@register("api:model-list", "api:model-detail")
def _models(tenant_b):
    version = make_model_version(make_plan(tenant_b, f"plan-{B_MARKER}"),
                                 report={"note": B_SECRET})
    return [Request("GET", "/api/v1/models", expect=(200,)),
            Request("GET", f"/api/v1/models?plan={version.plan_id}", expect=(200,)),
            Request("GET", f"/api/v1/models/{version.pk}")]


@register("api:model-promote", "api:model-rollback")
def _switches(tenant_b):
    plan = make_plan(tenant_b, f"plan-{B_MARKER}")
    version = make_model_version(plan)
    rejected = make_model_version(plan, status=ModelStatus.REJECTED)
    rejected.decision = {"verdict": "fail", "reasons": [B_SECRET]}
    rejected.save()
    body = {"reason": "cross-tenant attempt"}
    return [Request("POST", f"/api/v1/models/{version.pk}/promote", body),
            Request("POST", f"/api/v1/models/{rejected.pk}/promote",
                    {**body, "override": True}),
            Request("POST", f"/api/v1/models/{version.pk}/rollback", body)]


@register("api:model-report")
def _report(tenant_b):
    version = make_model_version(make_plan(tenant_b, f"plan-{B_MARKER}"))
    return [Request("GET", f"/api/v1/models/{version.pk}/report")]
