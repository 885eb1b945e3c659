from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from mfplatform.registry.models import ModelVersion
from mfplatform.training.models import PlanRevision, TrainingPlan, TrainingRun
from tenants.models import Role
from tenants.services import add_member
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic


@pytest.mark.django_db(transaction=True)
def test_train_command_waits_for_the_worker(tenant_a, celery_worker_process):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic())
        make_plan(tenant_a.tenant, "main", **TEST_PLAN)
    out = StringIO()
    call_command("train", "alpha", "main", "--wait", "--timeout", "120", stdout=out,
                 stderr=StringIO())
    assert "succeeded: model version" in out.getvalue()
    with tenant_a.scope():
        assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_train_command_errors(tenant_a):
    with pytest.raises(CommandError, match="no tenant"):
        call_command("train", "nope", "main")
    with pytest.raises(CommandError, match="has no plan"):
        call_command("train", "alpha", "main")


@pytest.fixture
def alice(tenant_a):
    add_member(tenant_a.tenant, "alice@alpha.test", Role.OWNER)
    return get_user_model().objects.get(username="alice@alpha.test")


@pytest.mark.django_db
def test_admin_plan_edit_validates_and_revises(client, alice, tenant_a):
    client.force_login(alice)
    response = client.post("/admin/training/trainingplan/add/", {
        "name": "from-admin", "config": '{"training": {"strategy": "nope"}}',
        "is_active": "on", "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 200 and "unknown strategy" in response.content.decode()
    # Errors are named by their path; the editor lists every field with its type and default.
    for config, error in (('{"training": {"factors": 0}}',
                           "training.factors: Ensure this value is greater than or equal to 2."),
                          ('{"evnts": {}}', "evnts: unknown key; expected one of events,")):
        response = client.post("/admin/training/trainingplan/add/", {
            "name": "from-admin", "config": config, "is_active": "on",
            "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
        page = response.content.decode()
        assert response.status_code == 200 and error in page, config
        assert "plan-config-reference" in page and "<td>training.tune.time_budget_s</td>" in page
    response = client.post("/admin/training/trainingplan/add/", {
        "name": "from-admin", "config": '{"training": {"strategy": "bpr"}}',
        "is_active": "on", "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_a.scope():
        plan = TrainingPlan.objects.get(name="from-admin")
        assert plan.tenant_id == tenant_a.tenant.pk
        assert plan.config["training"]["strategy"] == "bpr"
        assert PlanRevision.objects.filter(plan=plan).count() == 1


@pytest.mark.django_db
def test_admin_train_action_queues_a_run(client, alice, tenant_a, tenant_b):
    with tenant_a.scope():
        mine = make_plan(tenant_a.tenant, "mine")
    with tenant_b.scope():
        theirs = make_plan(tenant_b.tenant, "theirs")
    client.force_login(alice)
    client.post("/admin/training/trainingplan/", {
        "action": "train_now", "_selected_action": [mine.pk, theirs.pk]})
    with tenant_a.scope():
        assert TrainingRun.objects.filter(plan=mine, trigger="admin").count() == 1
    with tenant_b.scope():
        assert TrainingRun.objects.filter(plan=theirs).count() == 0
