from mfplatform.training.models import RunStatus
from tests.cross_tenant import B_MARKER, Request, register
from tests.factories import make_dataset, make_plan, make_run


@register("api:plan-list")
def _plan_list(tenant_b):
    make_plan(tenant_b, f"plan-{B_MARKER}")
    return [Request("GET", "/api/v1/plans", expect=(200,)),
            # Creating a plan never touches B, even with B's name.
            Request("POST", "/api/v1/plans", {"name": f"mine-{B_MARKER[:3]}"}, expect=(201,))]


@register("api:plan-detail")
def _plan_detail(tenant_b):
    plan = make_plan(tenant_b, f"plan-{B_MARKER}")
    url = f"/api/v1/plans/{plan.pk}"
    return [Request("GET", url), Request("PATCH", url, {"name": "stolen"}),
            Request("PUT", url, {"name": "stolen"}), Request("DELETE", url)]


@register("api:plan-train")
def _plan_train(tenant_b):
    plan = make_plan(tenant_b, f"plan-{B_MARKER}")
    return [Request("POST", f"/api/v1/plans/{plan.pk}/train")]


@register("api:run-list", "api:run-detail")
def _runs(tenant_b):
    run = make_run(make_plan(tenant_b, f"plan-{B_MARKER}"))
    return [Request("GET", "/api/v1/runs", expect=(200,)),
            Request("GET", f"/api/v1/runs?plan={run.plan_id}", expect=(200,)),
            Request("GET", f"/api/v1/runs/{run.pk}")]


@register("api:run-cancel")
def _run_cancel(tenant_b):
    run = make_run(make_plan(tenant_b, f"plan-{B_MARKER}"), status=RunStatus.TRAINING)
    return [Request("POST", f"/api/v1/runs/{run.pk}/cancel", {"reason": "not mine"})]


@register("api:dataset-list", "api:dataset-detail")
def _datasets(tenant_b):
    dataset = make_dataset(make_run(make_plan(tenant_b, f"plan-{B_MARKER}")), B_MARKER)
    return [Request("GET", "/api/v1/datasets", expect=(200,)),
            Request("GET", f"/api/v1/datasets/{dataset.pk}")]
