"""The experiment's admin results page: tables, the chart over time, promote the winner
(audited through the registry); another tenant's experiment is a 404. And in Chromium."""

import struct

import pytest
from django.contrib.auth import get_user_model
from django_celery_beat.models import PeriodicTask

from mfplatform.experiments.models import Experiment
from mfplatform.registry.models import ModelStatus, PromotionLog
from tenants.models import Role
from tenants.services import add_member
from tests.experiments.decided import decided_experiment
from tests.factories import make_model_version, make_plan
from tests.registry.test_report_browser import SCREENSHOTS, chromium_driver, login


def _member(client, tenant, email, role=Role.ADMIN):
    add_member(tenant, email, role)
    client.force_login(get_user_model().objects.get(username=email))


def test_results_page_and_promote_the_winner(client, tenant_a, tenant_b):
    with tenant_a.scope():
        experiment, version = decided_experiment(tenant_a.tenant)
    _member(client, tenant_a.tenant, "admin@alpha.test")
    url = f"/admin/experiments/experiment/{experiment.pk}/results/"
    html = client.get(url).content.decode()
    assert "Winner: model" in html and 'id="chart-over-time"' in html
    assert "data:image/png;base64," in html and "promote-winner" in html
    response = client.post(f"/admin/experiments/experiment/{experiment.pk}/promote/",
                           {"variant": "model", "reason": "clear CTR win"})
    assert response.status_code == 302
    with tenant_a.scope():
        version.refresh_from_db()
        log = PromotionLog.objects.get(to_version=version)
    assert version.status == ModelStatus.ACTIVE
    assert "model-vs-popularity" in log.reason and "clear CTR win" in log.reason
    assert log.actor == "user admin@alpha.test"


def test_another_tenants_experiment_page_is_a_404(client, tenant_a, tenant_b):
    with tenant_b.scope():
        experiment, _version = decided_experiment(tenant_b.tenant)
    _member(client, tenant_a.tenant, "admin@alpha.test")
    response = client.get(f"/admin/experiments/experiment/{experiment.pk}/results/")
    assert response.status_code == 404
    # The change page: Django's admin answers "does not exist" by a redirect to the index.
    response = client.get(f"/admin/experiments/experiment/{experiment.pk}/change/",
                          follow=True)
    assert b"model-vs-popularity" not in response.content
    response = client.post(f"/admin/experiments/experiment/{experiment.pk}/promote/",
                           {"variant": "model", "reason": "x"})
    assert response.status_code == 404


def test_an_analyst_sees_results_but_no_promote_button(client, tenant_a):
    with tenant_a.scope():
        experiment, _version = decided_experiment(tenant_a.tenant)
    _member(client, tenant_a.tenant, "analyst@alpha.test", Role.ANALYST)
    html = client.get(f"/admin/experiments/experiment/{experiment.pk}/results/").content
    assert b"Winner: model" in html and b"promote-winner" not in html


@pytest.mark.django_db(transaction=True)
def test_results_page_in_chromium(live_server, tenant_a):
    with tenant_a.scope():
        experiment, version = decided_experiment(tenant_a.tenant)
    add_member(tenant_a.tenant, "admin@alpha.test", Role.ADMIN, password="pw-admin-123")
    driver = chromium_driver()
    path = SCREENSHOTS / "experiment.png"
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        login(driver, live_server, "admin@alpha.test", "pw-admin-123")
        url = f"{live_server.url}/admin/experiments/experiment/{experiment.pk}/results/"
        driver.get(url)
        assert "Winner: model" in driver.find_element(By.ID, "verdict").text
        chart = driver.find_element(By.ID, "chart-over-time")
        assert driver.execute_script("return arguments[0].complete && "
                                     "arguments[0].naturalWidth > 0", chart)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        assert driver.save_screenshot(str(path))
        driver.find_element(By.NAME, "reason").send_keys("won in the browser")
        driver.find_element(By.ID, "promote-winner").click()
        WebDriverWait(driver, 30).until(lambda d: "Promoted v" in d.page_source)
    finally:
        driver.quit()
    with tenant_a.scope():
        version.refresh_from_db()
    assert version.status == ModelStatus.ACTIVE
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert width >= 1000 and height >= 1000


def test_a_member_creates_an_experiment_with_its_variants_in_the_admin(client, tenant_a):
    with tenant_a.scope():
        version = make_model_version(make_plan(tenant_a.tenant))
    _member(client, tenant_a.tenant, "admin@alpha.test")
    form = {"name": "from-admin", "surface": "recommendations", "click_event": "click",
            "min_samples": "100", "alpha": "0.05",
            "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0",
            "variants-MIN_NUM_FORMS": "0", "variants-MAX_NUM_FORMS": "1000",
            "variants-0-name": "control", "variants-0-kind": "popularity",
            "variants-0-share": "0.5", "variants-0-is_control": "on",
            "variants-1-name": "model", "variants-1-kind": "version",
            "variants-1-model_version": str(version.pk), "variants-1-share": "0.6"}
    url = "/admin/experiments/experiment/add/"
    refused = client.post(url, form)
    assert refused.status_code == 200 and b"must sum to 1" in refused.content
    response = client.post(url, {**form, "variants-1-share": "0.5"})
    assert response.status_code == 302, response.content[:2000]
    with tenant_a.scope():
        experiment = Experiment.objects.get(name="from-admin")
        assert experiment.tenant_id == tenant_a.tenant.pk and experiment.status == "draft"
        assert sorted(v.tenant_id for v in experiment.variants.all()) == [
            tenant_a.tenant.pk] * 2


def test_retention_is_scheduled_in_beat(db):
    assert PeriodicTask.objects.get(task="experiments.drop_old_impressions").enabled
