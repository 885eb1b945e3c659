"""The admin console through Django's test client: a tenant admin's index is their overview,
operators see every tenant's health, the preview answers through serving, and the report page
switches versions through the registry. Another tenant's pages are 404s."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import upsert_items
from mfplatform.ops import console
from mfplatform.registry.models import ModelStatus, PromotionLog
from mfplatform.registry.services import decide_promotion
from mfplatform.serving.models import EligibilityRule
from mfplatform.training.models import RunStatus
from tenants.models import Role
from tenants.services import add_member
from tests.cross_tenant import B_MARKER, B_SECRET
from tests.factories import make_model_version, make_plan, make_run
from tests.registry.reports import full_report

pytestmark = pytest.mark.django_db


def login(client, tenant, email: str, role: str = Role.ADMIN):
    add_member(tenant, email, role)
    client.force_login(get_user_model().objects.get(username=email))


def operator(client):
    user = get_user_model().objects.create_superuser("op@platform.test", "op@platform.test",
                                                     "pw-operator-1")
    client.force_login(user)


@pytest.fixture
def alpha(tenant_a):
    """Alpha: a catalogue with events today, an active v1, a rule, one failed run."""
    with tenant_a.scope():
        upsert_items(tenant_a.tenant, [{"external_id": f"sku-{i}", "title": f"Alpha thing {i}",
                                        "category": "tools"} for i in range(6)])
        ingest_events(tenant_a.tenant, [{"user": f"customer-{u}", "item": f"sku-{i}",
                                         "type": "click"}
                                        for u in range(4) for i in range(u + 1)])
        plan = make_plan(tenant_a.tenant, "main")
        active = decide_promotion(make_model_version(plan, report=full_report(0.3)))
        assert active.status == ModelStatus.ACTIVE
        make_run(plan, status=RunStatus.FAILED)
        EligibilityRule.objects.create(tenant=tenant_a.tenant, name="no-toys", kind="category",
                                       params={"exclude": ["toys"]})
    return active


@pytest.fixture
def bravo(tenant_b):
    """Bravo's rows carry markers that must never reach alpha's pages."""
    with tenant_b.scope():
        upsert_items(tenant_b.tenant, [{"external_id": f"{B_MARKER}-item", "title": B_SECRET}])
        ingest_events(tenant_b.tenant, [{"user": f"{B_MARKER}-user",
                                         "item": f"{B_MARKER}-item", "type": "click"}])
        plan = make_plan(tenant_b.tenant, f"{B_SECRET}-plan")
        return decide_promotion(make_model_version(plan, report=full_report(0.3)))


def test_tenant_admin_index_is_the_tenant_overview(client, tenant_a, alpha, bravo):
    login(client, tenant_a.tenant, "adam@alpha.test")
    page = client.get("/admin/")
    assert page.status_code == 200
    html = page.content.decode()
    overview = page.context["overview"]
    assert overview["active"] == alpha and f"main v{alpha.version}" in html
    assert overview["totals"] == {"items": 6, "users": 4, "events": 10}
    assert overview["days"][-1]["events"] == 10 and len(overview["days"]) == 30
    assert overview["days_total"] == {"events": 10, "users": 4, "items": 6}
    assert overview["rules"] == {"total": 1, "enabled": 1}
    assert [entry["run"].status for entry in overview["runs"]][:1] == [RunStatus.FAILED]
    assert "<svg" in html and 'id="daily-chart"' in html
    assert B_MARKER not in html and B_SECRET not in html


def test_serving_counters_come_from_the_metrics_of_this_process(client, tenant_a, alpha):
    before = console.serving_counters(tenant_a.tenant)
    response = tenant_a.client().get("/api/v1/recommendations?user=customer-1&k=3")
    assert response.status_code == 200, response.content
    after = console.serving_counters(tenant_a.tenant)
    assert after["requests"] == before["requests"] + 1
    assert after["ok"] == before["ok"] + 1


def test_operator_sees_every_tenants_health_failing_first(client, tenant_a, tenant_b, alpha,
                                                          bravo):
    with tenant_b.scope():
        make_run(bravo.plan, status=RunStatus.SUCCEEDED)
    operator(client)
    page = client.get("/admin/console/health/")
    assert page.status_code == 200
    rows = page.context["rows"]
    assert [(r.tenant.slug, r.health) for r in rows] == [("alpha", "failing"), ("bravo", "ok")]
    assert rows[0].failed_7d == 1 and rows[0].events_24h == 10 and rows[0].model == alpha
    by_tenant = client.get("/admin/console/health/?sort=tenant&dir=desc").context["rows"]
    assert [r.tenant.slug for r in by_tenant] == ["bravo", "alpha"]
    bad = client.get("/admin/console/health/?sort=nonsense")
    assert bad.status_code == 400 and "sort" in json.loads(bad.content)
    # The operator opens a tenant's overview from the table.
    assert client.get("/admin/console/tenants/bravo/").context["overview"]["active"] == bravo
    assert client.get("/admin/console/tenants/nobody/").status_code == 404


def test_tenant_admin_gets_404_for_other_tenants_console_pages(client, tenant_a, tenant_b, alpha,
                                                              bravo):
    login(client, tenant_a.tenant, "adam@alpha.test")
    assert client.get("/admin/console/tenants/alpha/").status_code == 200
    for url in ("/admin/console/tenants/bravo/",
                f"/admin/console/preview/?tenant=bravo&user={B_MARKER}-user&k=5",
                "/admin/console/health/",
                f"/admin/registry/modelversion/{bravo.pk}/report/",
                f"/admin/registry/modelversion/{bravo.pk}/promote/",
                f"/admin/registry/modelversion/{bravo.pk}/rollback/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert B_SECRET not in response.content.decode(), url
    response = client.post(f"/admin/registry/modelversion/{bravo.pk}/rollback/",
                           {"reason": "not mine"})
    assert response.status_code == 404
    with tenant_b.scope():
        bravo.refresh_from_db()
        assert bravo.status == ModelStatus.ACTIVE


def test_preview_shows_titles_sources_and_reasons(client, tenant_a, alpha):
    login(client, tenant_a.tenant, "adam@alpha.test")
    page = client.get("/admin/console/preview/?user=customer-0&k=3")
    assert page.status_code == 200
    answer = page.context["answer"]
    assert answer["known_user"] and len(answer["items"]) == 3
    assert all(e["title"].startswith("Alpha thing") and e["source"] and e["reason"]
               for e in answer["items"])
    assert "sku-0" not in [e["item"] for e in answer["items"]]  # seen: filtered by the rules
    html = page.content.decode()
    assert "Alpha thing" in html and 'id="preview-items"' in html


def test_preview_form_errors_name_the_field(client, tenant_a, alpha):
    login(client, tenant_a.tenant, "adam@alpha.test")
    page = client.get("/admin/console/preview/?user=customer-0&k=0")
    assert page.status_code == 400 and "k" in page.context["form"].errors
    page = client.get("/admin/console/preview/?user=&k=5")
    assert page.status_code == 400 and "user" in page.context["form"].errors


def test_operator_previews_any_tenant(client, tenant_a, alpha, bravo):
    operator(client)
    page = client.get("/admin/console/preview/?tenant=bravo&user=someone-new&k=3")
    assert page.status_code == 200
    answer = page.context["answer"]
    assert not answer["known_user"]
    assert [e["title"] for e in answer["items"]] == [B_SECRET]
    assert client.get("/admin/console/preview/?user=x&k=3").status_code == 400  # no tenant


def test_report_page_is_inside_the_admin_with_buttons_for_admins_only(client, tenant_a, alpha):
    with tenant_a.scope():
        candidate = make_model_version(alpha.plan, report=full_report(0.4))
    login(client, tenant_a.tenant, "adam@alpha.test")
    html = client.get(f"/admin/registry/modelversion/{candidate.pk}/report/").content.decode()
    assert 'class="breadcrumbs"' in html and 'id="promote-button"' in html
    assert 'id="metric-glossary"' in html and "Gini" in html and "Top-1% share" in html
    confirm = client.get(f"/admin/registry/modelversion/{candidate.pk}/promote/")
    assert "becomes active; the active v1 retires" in confirm.content.decode()
    assert client.post(f"/admin/registry/modelversion/{candidate.pk}/promote/",
                       {"reason": ""}).status_code == 400
    done = client.post(f"/admin/registry/modelversion/{candidate.pk}/promote/",
                       {"reason": "better on the new catalogue"})
    assert done.status_code == 302
    with tenant_a.scope():
        candidate.refresh_from_db()
        assert candidate.status == ModelStatus.ACTIVE
        entry = PromotionLog.objects.get(to_version=candidate)
        assert entry.reason == "better on the new catalogue" and "adam@alpha.test" in entry.actor
    html = client.get(f"/admin/registry/modelversion/{candidate.pk}/report/").content.decode()
    assert 'id="rollback-button"' in html and f"Roll back to v{alpha.version}" in html

    client.logout()
    login(client, tenant_a.tenant, "ann@alpha.test", Role.ANALYST)
    html = client.get(f"/admin/registry/modelversion/{candidate.pk}/report/").content.decode()
    assert "promote-button" not in html and "rollback-button" not in html
    assert client.post(f"/admin/registry/modelversion/{candidate.pk}/rollback/",
                       {"reason": "analysts may not"}).status_code == 403


def test_a_rejected_version_is_not_promised_to_become_active(client, tenant_a, alpha):
    with tenant_a.scope():
        rejected = make_model_version(alpha.plan, status=ModelStatus.REJECTED,
                                      report=full_report(0.1))
    login(client, tenant_a.tenant, "adam@alpha.test")
    html = client.get(f"/admin/registry/modelversion/{rejected.pk}/report/").content.decode()
    assert "promote-button" not in html and "Cannot be promoted" in html
    page = client.get(f"/admin/registry/modelversion/{rejected.pk}/promote/").content.decode()
    assert "cannot be promoted" in page and "becomes active" not in page
    client.post(f"/admin/registry/modelversion/{rejected.pk}/promote/", {"reason": "try it"})
    # The bulk action's confirmation says the same.
    action = client.post("/admin/registry/modelversion/", {
        "action": "promote_versions", "_selected_action": [rejected.pk]}).content.decode()
    assert "cannot be promoted" in action and "becomes active" not in action
    with tenant_a.scope():
        rejected.refresh_from_db()
        assert rejected.status == ModelStatus.REJECTED


def test_empty_segments_have_no_rows(client, tenant_a, alpha):
    report = full_report(0.3)
    for values in report["metrics"]["cold_users"].values():
        values["n_users"] = 0
    with tenant_a.scope():
        version = make_model_version(alpha.plan, report=report)
    login(client, tenant_a.tenant, "adam@alpha.test")
    report_html = client.get(f"/admin/registry/modelversion/{version.pk}/report/")
    rows = [row["segment"] for row in report_html.context["rows"]]
    assert "cold users" not in rows and rows.count("overall") == 3
    change = client.get(f"/admin/registry/modelversion/{version.pk}/change/").content.decode()
    assert 'class="report-summary"' in change and "cold users" not in change
    assert "&quot;ndcg&quot;" not in change  # the report as a table, not its JSON


def test_run_page_shows_progress_and_timings_as_tables(client, tenant_a, alpha):
    with tenant_a.scope():
        run = make_run(alpha.plan, status=RunStatus.SUCCEEDED)
        run.progress = {"iteration": 8, "iterations": 8, "loss": 0.125}
        run.timings = {"building_dataset": 1.5, "training": 3.0, "evaluating": 0.5}
        run.started_at = timezone.now() - timedelta(seconds=5)
        run.save()
    login(client, tenant_a.tenant, "adam@alpha.test")
    html = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert 'class="run-progress"' in html and 'class="run-timings"' in html
    assert "<td>training</td><td>3.00 s</td><td>60%</td>" in html
    assert "<td>done</td><td>100%</td>" in html
    assert '{"iteration"' not in html and "&quot;iteration&quot;" not in html
