"""A tenant admin logs into the admin in headless Chromium, opens a model's report page, and
every chart has loaded; the screenshot lands in var/screenshots/."""

import os
import struct
import tempfile
from pathlib import Path

import pytest

from mfplatform.registry.models import ModelStatus
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

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHARTS = {"Metrics by K", "Segments", "Vector norms", "Popularity concentration",
          "Training loss"}


def chromium_driver(extra_flags: tuple[str, ...] = (), log_network: bool = False):
    """Headless Chromium; `log_network` keeps every request in its performance log."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        message = (f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver "
                   f"(.ci/run installs them)")
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but " + message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,2600",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-profile-')}"):
        options.add_argument(flag)
    for flag in extra_flags:
        options.add_argument(flag)
    if log_network:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def login(driver, live_server, username: str, password: str) -> None:
    """Through the admin's real login form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{live_server.url}/admin/login/?next=/admin/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: "/admin/login/" not in d.current_url)


@pytest.mark.django_db(transaction=True)
def test_report_page_renders_charts_in_chromium(live_server, tenant_a):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(n_users=200, n_items=80, n_interactions=4000))
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        # A weak earlier version is active, so the report compares with it.
        earlier = decide_promotion(make_model_version(plan, report=full_report(0.01)))
        assert earlier.status == ModelStatus.ACTIVE
        # Never sent to the broker: a session worker started by other tests would race it.
        version = execute_run(make_run(plan, status=RunStatus.QUEUED))
        assert version.report["comparison"]["metrics"]
    add_member(tenant_a.tenant, "admin@alpha.test", Role.ADMIN, password="pw-admin-123")
    driver = chromium_driver()
    path = SCREENSHOTS / "report.png"
    try:
        login(driver, live_server, "admin@alpha.test", "pw-admin-123")
        report_url = f"{live_server.url}/admin/registry/modelversion/{version.pk}/report/"
        driver.get(report_url)
        assert driver.current_url == report_url
        assert "Promotion decision" in driver.page_source
        assert "previously active version" in driver.page_source
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth,"
            " i.naturalHeight])")
        assert {alt for alt, *_ in images} == CHARTS, images
        assert all(complete and width > 0 and height > 0
                   for _alt, complete, width, height in images), images
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        assert driver.save_screenshot(str(path))
    finally:
        driver.quit()
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 1000 and height >= 1000 and len(data) > 50_000, (width, height, len(data))
