from mfplatform.experiments.services import VariantInput, create_experiment
from tests.cross_tenant import B_MARKER, B_SECRET, Request, register
from tests.factories import make_model_version, make_plan


def _experiment(tenant_b):
    version = make_model_version(make_plan(tenant_b, f"plan-{B_MARKER}"),
                                 report={"note": B_SECRET})
    return create_experiment(tenant_b, f"exp-{B_MARKER}", [
        VariantInput("control", "popularity", 0.5),
        VariantInput(f"v-{B_SECRET}", "version", 0.5, model_version=version.pk)])


@register("api:experiment-list", "api:experiment-detail", "api:experiment-results")
def _read(tenant_b):
    experiment = _experiment(tenant_b)
    return [Request("GET", "/api/v1/experiments", expect=(200,)),
            Request("GET", f"/api/v1/experiments/{experiment.pk}"),
            Request("GET", f"/api/v1/experiments/{experiment.pk}/results")]


@register("api:experiment-start", "api:experiment-stop", "api:experiment-promote")
def _write(tenant_b):
    experiment = _experiment(tenant_b)
    version = experiment.variants.get(kind="version").model_version
    return [Request("POST", f"/api/v1/experiments/{experiment.pk}/start"),
            Request("POST", f"/api/v1/experiments/{experiment.pk}/stop"),
            Request("POST", f"/api/v1/experiments/{experiment.pk}/promote",
                    {"variant": f"v-{B_MARKER}", "reason": "cross-tenant attempt"}),
            # A's experiment naming B's model version: refused as unknown, never used.
            Request("POST", "/api/v1/experiments", {
                "name": "steal", "variants": [
                    {"name": "a", "kind": "popularity", "share": 0.5},
                    {"name": "b", "kind": "version", "model_version": version.pk,
                     "share": 0.5}]}, expect=(400,))]
