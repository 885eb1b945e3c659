"""An operator may promote a version the promotion gate rejected, with a reason: over REST
(`{"override": true}`) and in the admin. The override is audited; a failed quality check is
never overridable."""

import pytest

from mfplatform.registry.models import ModelStatus, ModelVersion, PromotionLog
from mfplatform.registry.services import RegistryError, decide_promotion, promote
from tenants.models import Role
from tests.factories import make_model_version, make_plan
from tests.registry.reports import report
from tests.registry.test_report_pages import ADMIN, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def rejected(tenant_a):
    """v1 active; v2 rejected by the gate (below popularity)."""
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main")
        active = decide_promotion(make_model_version(plan, report=report(0.3)))
        version = decide_promotion(make_model_version(plan, report=report(0.05)))
    assert (active.status, version.status) == (ModelStatus.ACTIVE, ModelStatus.REJECTED)
    return version


def test_rest_override_promotes_a_rejected_version_and_audits_it(tenant_a, rejected):
    client = tenant_a.client()
    url = f"/api/v1/models/{rejected.pk}/promote"
    plain = client.post(url, {"reason": "ship it"}, format="json")
    assert plain.status_code == 409  # without the override the gate's rejection stands
    bad = client.post(url, {"reason": "ship it", "override": "perhaps"}, format="json")
    assert bad.status_code == 400 and "override" in bad.json()["errors"]
    unexplained = client.post(url, {"override": True}, format="json")
    assert unexplained.status_code == 400 and "reason" in unexplained.json()["errors"]
    response = client.post(url, {"reason": "popularity is wrong this week", "override": True},
                           format="json")
    assert response.status_code == 200, response.json()
    entry = response.json()
    assert entry["action"] == "promote" and entry["to_version"] == rejected.pk
    assert entry["reason"].startswith("override of the gate's rejection (ndcg@10 0.0500 is not")
    assert entry["reason"].endswith(": popularity is wrong this week")
    detail = client.get(f"/api/v1/models/{rejected.pk}").json()
    assert detail["status"] == "active"
    assert detail["decision"]["verdict"] == "fail"  # the gate's decision stays on record
    assert detail["decision"]["override"]["reason"] == "popularity is wrong this week"
    assert detail["decision"]["override"]["actor"].startswith("api key ")
    again = client.post(url, {"reason": "twice", "override": True}, format="json")
    assert again.status_code == 409 and "nothing to override" in again.json()["detail"]


def test_a_failed_quality_check_cannot_be_overridden(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main")
        broken = make_model_version(plan, report=report(0.3))
        broken.checks = [{"name": "finite", "passed": False, "reason": "NaN", "values": {}}]
        broken.save()
        broken = decide_promotion(broken)
        assert broken.status == ModelStatus.REJECTED
        with pytest.raises(RegistryError, match="failed quality checks"):
            promote(broken, actor="test", reason="anyway", override=True)
        broken.refresh_from_db()
        assert broken.status == ModelStatus.REJECTED and "override" not in broken.decision
        assert not PromotionLog.objects.filter(to_version=broken,
                                               action="promote").exists()


def test_admin_override_action_asks_why_and_promotes(client, tenant_a, rejected):
    admin_user = member(client, tenant_a.tenant, "adam@alpha.test", Role.ADMIN)
    assert "override_rejections" in client.get(ADMIN).content.decode()
    form = client.post(ADMIN, {"action": "override_rejections",
                               "_selected_action": [rejected.pk]})
    assert form.status_code == 200 and b"Why override?" in form.content
    assert b"is not +0% over popularity" in form.content
    done = client.post(ADMIN, {"action": "override_rejections", "_selected_action": [rejected.pk],
                               "apply": "yes", "reason": "seasonal catalogue"})
    assert done.status_code == 302
    with tenant_a.scope():
        version = ModelVersion.objects.get(pk=rejected.pk)
        entry = PromotionLog.objects.filter(to_version=version).latest("created_at")
    assert version.status == ModelStatus.ACTIVE
    assert (entry.action, entry.actor_user_id) == ("promote", admin_user.pk)
    assert entry.reason.endswith(": seasonal catalogue")


def test_an_analyst_is_not_offered_the_override(client, tenant_a, rejected):
    member(client, tenant_a.tenant, "ana@alpha.test", Role.ANALYST)
    assert "override_rejections" not in client.get(ADMIN).content.decode()
    client.post(ADMIN, {"action": "override_rejections", "_selected_action": [rejected.pk],
                        "apply": "yes", "reason": "let me"})
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=rejected.pk).status == ModelStatus.REJECTED
