"""A tenant admin opens a model's report in headless Chromium; the charts render."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from mfplatform.training.pipeline import execute_run
from mfplatform.training.services import queue_run
from tenants.models import Role
from tenants.services import add_member
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def chromium_driver():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Chromium is missing: .ci/run installs chromium and "
                        "chromium-driver")
        pytest.skip("Chromium is not installed here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1300,2400",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def login(driver, live_server, username, password):
    from selenium.webdriver.common.by import By

    driver.get(f"{live_server.url}/admin/login/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


@pytest.mark.django_db(transaction=True)
def test_report_page_renders_charts_in_chromium(live_server, tenant_a):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic())
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        version = execute_run(queue_run(tenant_a.tenant, plan))
    add_member(tenant_a.tenant, "owner@alpha.test", Role.OWNER, password="pw-owner-123")
    assert get_user_model().objects.filter(username="owner@alpha.test").exists()
    driver = chromium_driver()
    try:
        login(driver, live_server, "owner@alpha.test", "pw-owner-123")
        driver.get(f"{live_server.url}/admin/registry/modelversion/{version.pk}/report/")
        assert "Promotion decision" in driver.page_source
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        titles = {alt for alt, _complete, _width in loaded}
        assert {"Metrics by K", "Segments", "Vector norms", "Popularity concentration",
                "Training loss"} <= titles
        assert all(complete and width > 100 for _alt, complete, width in loaded), loaded
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / "report.png"
        assert driver.save_screenshot(str(path))
    finally:
        driver.quit()
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
