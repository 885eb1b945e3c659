"""Report pages and the registry admin: operators see every tenant, a tenant's members their
own only; analysts read reports, owners and admins promote and roll back with a reason."""

import base64
import re

import pytest
from django.contrib.auth import get_user_model

from mfplatform.registry.models import ModelStatus, ModelVersion, PromotionLog
from mfplatform.registry.report_page import render_report_html
from mfplatform.registry.services import decide_promotion, history
from tenants.models import Role
from tenants.services import add_member
from tests.factories import make_model_version, make_plan
from tests.registry.reports import full_report

pytestmark = pytest.mark.django_db

CHARTS = ("Metrics by K", "Segments", "Vector norms", "Popularity concentration",
          "Training loss")
ADMIN = "/admin/registry/modelversion/"


def member(client, tenant, email: str, role: str):
    add_member(tenant, email, role)
    user = get_user_model().objects.get(username=email)
    client.force_login(user)
    return user


def chart_images(html: str) -> dict[str, bytes]:
    found = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)">', html)
    return {alt: base64.b64decode(data) for data, alt in found}


@pytest.fixture
def two_versions(tenant_a):
    """v1 active, then a better v2 auto-promoted over it: v2's report compares with v1."""
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main", promotion={
            "metric": "ndcg@10", "min_improvement_over_active": 0.05})
        v1 = decide_promotion(make_model_version(plan, report=full_report(0.2)))
        v2 = decide_promotion(make_model_version(
            plan, report=full_report(0.3, previous=full_report(0.2))))
        v1.refresh_from_db()
        assert (v1.status, v2.status) == (ModelStatus.RETIRED, ModelStatus.ACTIVE)
        return v1, v2


def test_report_page_compares_with_the_previous_version_and_the_baseline(tenant_a,
                                                                         two_versions):
    _v1, v2 = two_versions
    with tenant_a.scope():
        html = render_report_html(v2, log=history(v2))
    images = chart_images(html)
    assert set(images) == set(CHARTS)
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000 for png in images.values())
    # The previous version's numbers come from the report's comparison section.
    assert "against the active v1" in html and "previously active version (v1, als)" in html
    overall_10 = re.search(r"<td class=\"l\">overall</td><td>10</td>(.*?)</tr>", html, re.S)
    cells = re.findall(r"<td>([^<]*)</td>", overall_10.group(1))
    # NDCG, prev. NDCG, change, pop. NDCG, Recall, prev. Recall, change, pop. Recall
    assert cells[:8] == ["0.1500", "0.1000", "+50.0%", "0.0750", "0.3000", "0.2000",
                         "+50.0%", "0.1500"]
    for segment in ("cold users", "long tail"):
        assert f'<td class="l">{segment}</td><td>20</td>' in html
    # The gate decision with its numbers side by side, and the audit log.
    assert "PASS on ndcg@10" in html and "this model needs ≥ 0.1050" in html
    assert "auto_promote" in html and "auto-promotion: ndcg@10 0.1500 passes" in html


def test_a_report_without_a_previous_version_or_evaluation_still_renders(tenant_a):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main")
        lone = make_model_version(plan, report=full_report())
        bare = make_model_version(plan, report={"reason": "dataset below the minimums"})
        lone_html, bare_html = render_report_html(lone), render_report_html(bare)
    assert set(chart_images(lone_html)) == set(CHARTS)
    assert "No previously active version to compare with" in lone_html
    assert "prev. NDCG" not in lone_html and "No decision recorded yet" in lone_html
    assert chart_images(bare_html) == {}
    assert "No charts: dataset below the minimums" in bare_html


def test_api_report_is_the_same_standalone_page(tenant_a, two_versions):
    _v1, v2 = two_versions
    response = tenant_a.client().get(f"/api/v1/models/{v2.pk}/report")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert html.startswith("<!doctype html>") and set(chart_images(html)) == set(CHARTS)
    assert "Audit log" in html and "auto_promote" in html


def test_tenant_analyst_sees_only_own_reports_and_cannot_switch(client, tenant_a, tenant_b,
                                                                 two_versions):
    v1, v2 = two_versions
    with tenant_b.scope():
        theirs = decide_promotion(make_model_version(make_plan(tenant_b.tenant, "b-plan"),
                                                     report=full_report(0.4)))
    member(client, tenant_a.tenant, "ann@alpha.test", Role.ANALYST)
    listing = client.get(ADMIN).content.decode()
    assert f"{ADMIN}{v2.pk}/report/" in listing and f"{ADMIN}{v1.pk}/report/" in listing
    assert f"{ADMIN}{theirs.pk}/report/" not in listing and "b-plan" not in listing
    page = client.get(f"{ADMIN}{v2.pk}/report/")
    assert page.status_code == 200 and set(chart_images(page.content.decode())) == set(CHARTS)
    assert f'href="{ADMIN}{v2.pk}/change/"' in page.content.decode()
    # Another tenant's report and detail page are simply not there.
    assert client.get(f"{ADMIN}{theirs.pk}/report/").status_code == 404
    assert client.get(f"{ADMIN}{theirs.pk}/change/").status_code in (302, 404)
    detail = client.get(f"{ADMIN}{v2.pk}/change/").content.decode()
    assert "auto_promote" in detail and f"{ADMIN}{v2.pk}/report/" in detail
    # The audit log is theirs only, and read-only.
    log = client.get("/admin/registry/promotionlog/").content.decode()
    assert log.count('class="field-action"') == 2 and "b-plan" not in log
    assert client.get("/admin/registry/promotionlog/add/").status_code == 403
    # An analyst is not offered promote/rollback, and posting them changes nothing.
    assert "rollback_versions" not in listing and "promote_versions" not in listing
    client.post(ADMIN, {"action": "rollback_versions", "_selected_action": [v2.pk],
                        "apply": "yes", "reason": "analysts may not"})
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=v2.pk).status == ModelStatus.ACTIVE
        assert PromotionLog.objects.count() == 2


def test_operator_sees_every_tenants_reports(client, tenant_a, tenant_b, two_versions):
    _v1, v2 = two_versions
    with tenant_b.scope():
        theirs = make_model_version(make_plan(tenant_b.tenant, "b-plan"), report=full_report())
    operator = get_user_model().objects.create_superuser("ops", "ops@platform.test", "pw")
    client.force_login(operator)
    listing = client.get(ADMIN).content.decode()
    assert f"{ADMIN}{v2.pk}/report/" in listing and f"{ADMIN}{theirs.pk}/report/" in listing
    assert client.get(f"{ADMIN}{theirs.pk}/report/").status_code == 200


def test_admin_promotes_and_rolls_back_with_a_reason(client, tenant_a, two_versions):
    v1, v2 = two_versions
    with tenant_a.scope():
        plan = v2.plan
        v3 = make_model_version(plan, report=full_report(0.35))
    admin_user = member(client, tenant_a.tenant, "adam@alpha.test", Role.ADMIN)
    listing = client.get(ADMIN).content.decode()
    assert "promote_versions" in listing and "rollback_versions" in listing
    # The action first asks why.
    form = client.post(ADMIN, {"action": "promote_versions", "_selected_action": [v3.pk]})
    assert form.status_code == 200 and b"Why promote?" in form.content
    assert b"becomes active; the active v2 retires" in form.content
    # No reason: the form again, nothing switched.
    blank = client.post(ADMIN, {"action": "promote_versions", "_selected_action": [v3.pk],
                                "apply": "yes", "reason": ""})
    assert blank.status_code == 200 and b"This field is required" in blank.content
    with tenant_a.scope():
        assert ModelVersion.objects.get(pk=v3.pk).status == ModelStatus.CANDIDATE
    done = client.post(ADMIN, {"action": "promote_versions", "_selected_action": [v3.pk],
                               "apply": "yes", "reason": "looked good in the report"})
    assert done.status_code == 302
    # Roll back: v2, active before v3, is active again; the log says who and why.
    form = client.post(ADMIN, {"action": "rollback_versions", "_selected_action": [v3.pk]})
    assert b"retires; v2 becomes active again" in form.content
    client.post(ADMIN, {"action": "rollback_versions", "_selected_action": [v3.pk],
                        "apply": "yes", "reason": "click-through fell after v3"})
    with tenant_a.scope():
        statuses = dict(ModelVersion.objects.filter(plan=plan).values_list("version", "status"))
        assert statuses == {1: "retired", 2: "active", 3: "retired"}
        log = list(PromotionLog.objects.filter(plan=plan).order_by("created_at").values_list(
            "action", "from_version__version", "to_version__version", "actor_user", "actor",
            "reason"))
    assert log[-2:] == [
        ("promote", 2, 3, admin_user.pk, "user adam@alpha.test", "looked good in the report"),
        ("rollback", 3, 2, admin_user.pk, "user adam@alpha.test",
         "click-through fell after v3")]
    # The change page and the report of v3 both show the audit trail.
    page = client.get(f"{ADMIN}{v3.pk}/report/").content.decode()
    assert "click-through fell after v3" in page and "looked good in the report" in page
    # Promoting an already active version is refused with a message, not a crash.
    refused = client.post(ADMIN, {"action": "promote_versions", "_selected_action": [v2.pk],
                                  "apply": "yes", "reason": "again"}, follow=True)
    assert b"only a candidate or a retired version" in refused.content
    with tenant_a.scope():
        assert ModelVersion.objects.filter(plan=plan, status="active").count() == 1


def test_charts_never_touch_pyplots_global_state():
    """pyplot keeps a global list of figures that threads of one web process would share:
    the charts are Figures of their own, and rendering them never imports pyplot."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import django\n"
        "django.setup()\n"
        "from mfplatform.registry import report_page\n"
        "from tests.registry.reports import full_report\n"
        "report = full_report(0.2)\n"
        "charts = [report_page._metric_by_k(report), report_page._segment_bars(report)]\n"
        "assert all(c and c.startswith('data:image/png;base64,') for c in charts), charts\n"
        "print('matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ,
                                          "DJANGO_SETTINGS_MODULE": "mfplatform.test_settings"})
    assert out.stdout.strip() == "False"
