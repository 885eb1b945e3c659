"""The plan editor in real headless Chromium, as a tenant admin: a bad value is refused with
an error naming its key, the fix saves as a new revision. Screenshots land in
var/screenshots/console/."""

import json

import pytest

from mfplatform.training.models import TrainingPlan
from tenants.models import Role
from tenants.services import add_member
from tests.factories import make_plan
from tests.ops.test_console_browser import browser, shoot
from tests.registry.test_report_browser import login


def _type_config(driver, config: dict) -> None:
    from selenium.webdriver.common.by import By

    area = driver.find_element(By.NAME, "config")
    area.clear()
    area.send_keys(json.dumps(config, indent=2))


@pytest.mark.django_db(transaction=True)
def test_a_tenant_admin_fixes_a_bad_value_in_the_plan_editor(live_server, tenant_a):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "main")
    add_member(tenant_a.tenant, "admin@alpha.test", Role.ADMIN, password="pw-admin-123")
    driver = browser()
    try:
        login(driver, live_server, "admin@alpha.test", "pw-admin-123")
        driver.get(f"{live_server.url}/admin/training/trainingplan/{plan.pk}/change/")
        # The editor's help: every key with what it takes and its default.
        reference = driver.find_element(By.CLASS_NAME, "plan-config-reference").text
        assert "training.factors" in reference and "integer" in reference

        _type_config(driver, {"training": {"factors": -3, "iterations": 5}})
        driver.find_element(By.NAME, "_save").click()
        errors = driver.find_element(By.CSS_SELECTOR, ".errorlist").text
        assert "training.factors" in errors, errors
        assert "iterations" not in errors  # only the bad key is named
        shoot(driver, "plan-editor-error")
        with tenant_a.scope():
            assert TrainingPlan.objects.get(pk=plan.pk).revision == 1  # nothing saved

        _type_config(driver, {"training": {"factors": 16, "iterations": 5}})
        driver.find_element(By.NAME, "_save").click()
        WebDriverWait(driver, 30).until(lambda d: "/change/" not in d.current_url)
        assert "was changed successfully" in driver.page_source
        shoot(driver, "plan-editor-saved")
    finally:
        driver.quit()
    with tenant_a.scope():
        saved = TrainingPlan.objects.get(pk=plan.pk)
    assert saved.revision == 2
    assert (saved.config["training"]["factors"], saved.config["training"]["iterations"]) == (
        16, 5)
