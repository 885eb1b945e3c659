"""The newcomer's path: the demo seed, then the admin in headless Chromium: log in as the demo
tenant's admin and open the latest report."""

from io import StringIO

import pytest
from django.core.management import call_command

from tests.registry.test_report_browser import chromium_driver, login


@pytest.mark.django_db(transaction=True)
def test_demo_admin_opens_latest_report(live_server, settings, tmp_path):
    settings.VAR_DIR = tmp_path  # the demo keeps its key file there
    out = StringIO()
    call_command("seed_demo", "--users", "300", "--items", "80", "--events", "5000",
                 "--password", "demo-pw-123", "--base-url", live_server.url, stdout=out)
    printed = out.getvalue()
    assert "login admin@demo.example / demo-pw-123" in printed
    assert printed.count("curl -s") == 3
    from selenium.webdriver.common.by import By

    driver = chromium_driver()
    try:
        login(driver, live_server, "admin@demo.example", "demo-pw-123")
        driver.get(f"{live_server.url}/admin/registry/modelversion/")
        driver.find_element(By.LINK_TEXT, "report").click()
        assert "Promotion decision" in driver.page_source
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.naturalWidth)")
        assert len(widths) >= 4 and min(widths) > 100
    finally:
        driver.quit()
    # Running the seed again reuses everything (same key, same model).
    again = StringIO()
    call_command("seed_demo", "--password", "demo-pw-123", "--base-url", live_server.url,
                 stdout=again)
    key_line = [line for line in printed.splitlines() if "API key:" in line]
    assert key_line and key_line[0] in again.getvalue()
