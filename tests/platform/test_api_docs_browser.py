"""/api/docs/ in real headless Chromium with the network to the outside cut: Swagger UI renders
every operation from the server's own files, and no request leaves the server (issue #17).

The page is opened under a name that is not localhost (Swagger UI skips some outside requests,
such as its online validator badge, for localhost), which the browser maps to the live server;
every other name resolves to nothing. Chromium's network log lists every request it started,
including the ones that failed."""

import json
from urllib.parse import urlsplit

import pytest

from tests.ops.test_console_browser import shoot
from tests.registry.test_report_browser import chromium_driver

DOCS_HOST = "docs.mfplatform.test"


@pytest.mark.django_db(transaction=True)
def test_api_docs_render_with_no_request_leaving_the_server(live_server, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, DOCS_HOST]
    port = urlsplit(live_server.url).port
    driver = chromium_driver(
        extra_flags=(f"--host-resolver-rules=MAP {DOCS_HOST} 127.0.0.1, MAP * ~NOTFOUND",
                     "--disable-features=HttpsUpgrades"),
        log_network=True)
    try:
        driver.get(f"http://{DOCS_HOST}:{port}/api/docs/")
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 20)
        page = driver.find_element(By.ID, "swagger-ui").text
        assert "/api/v1/recommendations" in page and "/api/v1/events" in page
        assert "Failed to load API definition" not in page
        shoot(driver, "api-docs")
        requested = [entry for entry in (json.loads(e["message"])["message"]
                                         for e in driver.get_log("performance"))
                     if entry["method"] == "Network.requestWillBeSent"]
    finally:
        driver.quit()
    urls = [entry["params"]["request"]["url"] for entry in requested]
    assert any(url.endswith("/api/schema/") for url in urls), urls
    # Chromium's own pages (chrome://, its new tab page) never touch the network.
    outside = [url for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")
               and urlsplit(url).netloc != f"{DOCS_HOST}:{port}"]
    assert outside == [], outside
