"""Run lists and the promotion log name the plan revision a run or version was trained with,
not the plan's current one."""

import pytest

from mfplatform.registry.services import decide_promotion
from mfplatform.training.services import update_plan
from tenants.models import Role
from tests.factories import make_model_version, make_plan
from tests.registry.reports import full_report
from tests.registry.test_report_pages import member

pytestmark = pytest.mark.django_db


def test_runs_and_promotions_show_the_revision_they_used(client, tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main")
        version = decide_promotion(make_model_version(plan, report=full_report(0.3)))
        plan = update_plan(plan, config={"training": {"factors": 8}})
        assert (version.plan_revision.revision, plan.revision) == (1, 2)
    member(client, tenant_a.tenant, "ann@alpha.test", Role.ANALYST)

    runs = client.get("/admin/training/trainingrun/").content.decode()
    assert "main rev 1" in runs and "main (rev 2)" not in runs
    log = client.get("/admin/registry/promotionlog/").content.decode()
    assert f"v{version.version}</a> (plan rev 1)" in log and "(rev 2)" not in log
