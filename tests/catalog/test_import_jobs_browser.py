"""The CSV import page in real headless Chromium, as a tenant admin: the form with its help,
an upload, the job page with its counts once the worker has run it. Screenshots land in
var/screenshots/console/."""

import time

import pytest

from mfplatform.catalog.models import ImportJob, ImportStatus, Item
from mfplatform.catalog.tasks import import_file
from tenants.models import Role
from tenants.services import add_member
from tests.ops.test_console_browser import browser, shoot, wait_for_url
from tests.registry.test_report_browser import login


@pytest.mark.django_db(transaction=True)
def test_a_tenant_admin_imports_a_csv_from_the_admin(live_server, tenant_a, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    csv_file = tmp_path / "movies.csv"
    csv_file.write_text("movieId,title,genres\n1,Heat,Action|Crime\n2,Up,Animation\n")
    add_member(tenant_a.tenant, "admin@alpha.test", Role.ADMIN, password="pw-admin-123")
    driver = browser()
    try:
        login(driver, live_server, "admin@alpha.test", "pw-admin-123")
        driver.get(f"{live_server.url}/admin/catalog/importjob/add/")
        # The form's last field is there (the implicit wait): the page has loaded. Read
        # before it, page_source was once only the head (CI).
        driver.find_element(By.NAME, "_save")
        assert "Items: item, title, category, tags" in driver.page_source
        # A member imports into their own tenant: no tenant field. The page has loaded, so
        # look without the implicit wait, which an absent element would sit out (20 s).
        driver.implicitly_wait(0)
        assert not driver.find_elements(By.NAME, "tenant")
        driver.implicitly_wait(20)
        Select(driver.find_element(By.NAME, "kind")).select_by_value("items")
        driver.find_element(By.NAME, "upload").send_keys(str(csv_file))
        driver.find_element(By.NAME, "columns").send_keys(
            "item=movieId,title=title,category=genres,tags=genres")
        shoot(driver, "import-form")
        driver.find_element(By.NAME, "_save").click()
        wait_for_url(driver, "/admin/catalog/importjob/")
        assert "movies.csv" in driver.page_source

        with tenant_a.scope():
            job = ImportJob.objects.get()
        import_file(tenant_a.tenant.pk, job.pk)  # or a session worker already did
        deadline = time.monotonic() + 60
        while True:
            with tenant_a.scope():
                job.refresh_from_db()
            if job.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert job.status == ImportStatus.SUCCEEDED, job.error
        driver.get(f"{live_server.url}/admin/catalog/importjob/{job.pk}/change/")
        page = driver.find_element(By.ID, "content-main").text
        assert "Succeeded" in page and "movies.csv" in page
        shoot(driver, "import-job")
        with tenant_a.scope():
            assert Item.objects.get(external_id="1").title == "Heat"
    finally:
        driver.quit()
