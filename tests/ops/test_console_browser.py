"""The console in real headless Chromium, as a tenant admin and as an operator: the overview
index, the recommendation preview, the report with its Roll back button, the run and version
pages as tables, the tenant health table. Screenshots land in var/screenshots/console/."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from mfplatform.registry.models import ModelStatus, PromotionLog
from mfplatform.registry.runs import execute_run
from mfplatform.registry.services import decide_promotion
from mfplatform.training.models import RunStatus
from tenants.models import Role
from tenants.services import add_member
from tests.factories import (
    TEST_PLAN,
    load_synthetic,
    make_model_version,
    make_plan,
    make_run,
    synthetic,
)
from tests.registry.reports import full_report
from tests.registry.test_report_browser import chromium_driver, login

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "console"


def shoot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {path}")
    return path


def browser():
    """Chromium that waits up to 20 s for an element to appear: after a click the next page
    may still be loading."""
    driver = chromium_driver()
    driver.implicitly_wait(20)
    return driver


def texts(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def wait_for_url(driver, part: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: part in d.current_url)


@pytest.fixture
def console_data(tenant_a, tenant_b):
    """Alpha: a real trained model over a weak earlier one, and a failed run. Bravo: a model."""
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(n_users=200, n_items=80, n_interactions=4000))
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        earlier = decide_promotion(make_model_version(plan, report=full_report(0.01)))
        # Run in-process from a run row that was never sent to the broker: a session worker
        # started by other tests would otherwise pick the same run up.
        trained = execute_run(make_run(plan, status=RunStatus.QUEUED))
        assert trained.status == ModelStatus.ACTIVE, trained.decision
        failed = make_run(plan, status=RunStatus.FAILED)
    with tenant_b.scope():
        bravo = decide_promotion(make_model_version(make_plan(tenant_b.tenant, "b-main"),
                                                    report=full_report(0.3)))
    return {"earlier": earlier, "trained": trained, "failed": failed, "bravo": bravo}


@pytest.mark.django_db(transaction=True)
def test_tenant_admin_console_in_chromium(live_server, tenant_a, console_data):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    trained, earlier = console_data["trained"], console_data["earlier"]
    add_member(tenant_a.tenant, "admin@alpha.test", Role.ADMIN, password="pw-admin-123")
    driver = browser()
    try:
        login(driver, live_server, "admin@alpha.test", "pw-admin-123")
        # The index is the overview.
        driver.get(f"{live_server.url}/admin/")
        assert f"main v{trained.version}" in driver.find_element(By.ID, "active-model").text
        chart = driver.find_element(By.CSS_SELECTOR, "#daily-chart svg")
        assert chart.size["width"] > 300 and chart.size["height"] > 100
        statuses = texts(driver, "#last-runs td.failed, #last-runs td.succeeded")
        assert statuses[:2] == ["failed", "succeeded"], statuses
        shoot(driver, "tenant-overview")

        # Preview: the form, then the list with titles, sources and reasons.
        driver.find_element(By.LINK_TEXT, "Preview recommendations for a user").click()
        driver.find_element(By.NAME, "user").send_keys("user-3")
        driver.find_element(By.NAME, "k").clear()
        driver.find_element(By.NAME, "k").send_keys("5")
        driver.find_element(By.CSS_SELECTOR, "#preview-form input[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "preview-items"))
        rows = [row.find_elements(By.TAG_NAME, "td") for row in
                driver.find_elements(By.CSS_SELECTOR, "#preview-items tr")[1:]]
        assert len(rows) == 5
        assert all(cells[2].text for cells in rows)  # titles
        assert {cells[3].text for cells in rows} == {"mf"}
        assert all(cells[5].text.startswith("because you interacted with") for cells in rows)
        shoot(driver, "preview")

        # The report inside the admin; roll back to the earlier version with a reason.
        driver.get(f"{live_server.url}/admin/registry/modelversion/{trained.pk}/report/")
        assert driver.find_elements(By.CSS_SELECTOR, ".breadcrumbs a")
        assert "What the numbers mean" in driver.page_source
        shoot(driver, "report")
        driver.find_element(By.ID, "rollback-button").click()
        wait_for_url(driver, "/rollback/")
        assert f"v{earlier.version} becomes active again" in driver.find_element(
            By.ID, "switch-effect").text
        driver.find_element(By.NAME, "reason").send_keys("checking the rollback from the page")
        driver.find_element(By.CSS_SELECTOR, "#content-main input[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: "/report/" in d.current_url)
        assert "Roll back:" in driver.find_element(By.CSS_SELECTOR, ".messagelist").text

        # The run and the version as tables.
        driver.get(f"{live_server.url}/admin/training/trainingrun/"
                   f"{trained.training_run_id}/change/")
        stages = [t.split()[0] for t in texts(driver, "table.run-timings tbody tr")]
        assert {"training", "evaluating", "total"} <= set(stages), stages
        assert texts(driver, "table.run-progress tbody tr")
        shoot(driver, "run")
        driver.get(f"{live_server.url}/admin/registry/modelversion/{trained.pk}/change/")
        assert texts(driver, "table.report-summary tbody tr")
        assert texts(driver, "table.decision-summary tbody tr")
        shoot(driver, "version")
    finally:
        driver.quit()
    with tenant_a.scope():
        earlier.refresh_from_db()
        assert earlier.status == ModelStatus.ACTIVE
        assert PromotionLog.objects.filter(reason="checking the rollback from the page",
                                           actor="user admin@alpha.test").exists()


@pytest.mark.django_db(transaction=True)
def test_operator_health_table_in_chromium(live_server, console_data):
    from selenium.webdriver.common.by import By

    get_user_model().objects.create_superuser("op@platform.test", "op@platform.test",
                                              "pw-operator-1")
    driver = browser()
    try:
        login(driver, live_server, "op@platform.test", "pw-operator-1")
        driver.find_element(By.LINK_TEXT, "Tenant health").click()
        wait_for_url(driver, "/console/health/")
        order = [row.get_attribute("data-tenant") for row in
                 driver.find_elements(By.CSS_SELECTOR, "#tenant-health tbody tr")]
        assert order == ["alpha", "bravo"]  # alpha's last run failed: first
        assert texts(driver, "#tenant-health tbody td.failing") == [
            "failing\nthe last run failed; 1 failed run in 7 days"]
        shoot(driver, "health")
        tenant_header = "#tenant-health thead a[href^='?sort=tenant']"
        driver.find_element(By.CSS_SELECTOR, tenant_header).click()
        wait_for_url(driver, "sort=tenant")
        driver.find_element(By.CSS_SELECTOR, tenant_header).click()  # again: the other way
        wait_for_url(driver, "dir=desc")
        order = [row.get_attribute("data-tenant") for row in
                 driver.find_elements(By.CSS_SELECTOR, "#tenant-health tbody tr")]
        assert order == ["bravo", "alpha"]
        # From the table to a tenant's overview, and a preview for that tenant.
        driver.find_element(By.LINK_TEXT, "bravo").click()
        wait_for_url(driver, "/console/tenants/bravo/")
        assert "b-main v1" in driver.find_element(By.ID, "active-model").text
        driver.find_element(By.LINK_TEXT, "Preview recommendations for a user").click()
        driver.find_element(By.NAME, "user").send_keys("nobody-yet")
        driver.find_element(By.CSS_SELECTOR, "#preview-form input[type=submit]").click()
        wait_for_url(driver, "user=nobody-yet")
        assert "Unknown user" in driver.find_element(By.ID, "content-main").text
        shoot(driver, "operator-preview")
    finally:
        driver.quit()


@pytest.mark.django_db(transaction=True)
def test_operator_opens_every_tenant_page_in_chromium(live_server, tenant_a, console_data):
    """The pages a tenant admin gets, opened by an operator (a superuser, no membership):
    report with its buttons, run and version tables, plan editor, CSV import form (with the
    tenant to import into), experiment results."""
    from selenium.webdriver.common.by import By

    from tests.experiments.decided import decided_experiment

    trained = console_data["trained"]
    with tenant_a.scope():
        experiment, _version = decided_experiment(tenant_a.tenant)
    get_user_model().objects.create_superuser("op@platform.test", "op@platform.test",
                                              "pw-operator-1")
    admin = f"{live_server.url}/admin"
    driver = browser()
    try:
        login(driver, live_server, "op@platform.test", "pw-operator-1")
        driver.get(f"{admin}/registry/modelversion/{trained.pk}/report/")
        assert "What the numbers mean" in driver.page_source
        assert driver.find_element(By.ID, "rollback-button").is_displayed()
        shoot(driver, "operator-report")

        driver.get(f"{admin}/training/trainingrun/{trained.training_run_id}/change/")
        stages = [t.split()[0] for t in texts(driver, "table.run-timings tbody tr")]
        assert {"training", "evaluating", "total"} <= set(stages), stages
        shoot(driver, "operator-run")

        driver.get(f"{admin}/registry/modelversion/{trained.pk}/change/")
        assert texts(driver, "table.report-summary tbody tr")
        assert texts(driver, "table.decision-summary tbody tr")
        shoot(driver, "operator-version")

        driver.get(f"{admin}/training/trainingplan/{trained.plan_id}/change/")
        reference = driver.find_element(By.CLASS_NAME, "plan-config-reference").text
        assert "training.factors" in reference and "integer" in reference
        shoot(driver, "operator-plan-editor")

        driver.get(f"{admin}/catalog/importjob/add/")
        driver.find_element(By.NAME, "_save")  # the form has loaded
        assert "Items: item, title, category, tags" in driver.page_source
        assert driver.find_element(By.NAME, "tenant")  # an operator picks the tenant
        shoot(driver, "operator-import-form")

        driver.get(f"{admin}/experiments/experiment/{experiment.pk}/results/")
        assert "Winner: model" in driver.find_element(By.ID, "verdict").text
        chart = driver.find_element(By.ID, "chart-over-time")
        assert driver.execute_script("return arguments[0].complete && "
                                     "arguments[0].naturalWidth > 0", chart)
        assert driver.find_element(By.ID, "promote-winner")
        shoot(driver, "operator-experiment")
    finally:
        driver.quit()
