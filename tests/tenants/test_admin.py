"""Tenant admins see and change only their own tenant in the Django admin; operators see all."""

import pytest
from django.contrib.auth import get_user_model

from tenants.context import tenant_context
from tenants.models import ApiKey, Role
from tenants.services import add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(tenant_a):
    add_member(tenant_a.tenant, "alice@alpha.test", Role.OWNER, password="pw-alice-123")
    return get_user_model().objects.get(username="alice@alpha.test")


@pytest.fixture
def bob(tenant_b):
    add_member(tenant_b.tenant, "bob@bravo.test", Role.ADMIN, password="pw-bob-123")
    return get_user_model().objects.get(username="bob@bravo.test")


def test_tenant_admin_lists_only_own_keys(client, alice, bob, tenant_a, tenant_b):
    client.force_login(alice)
    page = client.get("/admin/tenants/apikey/").content.decode()
    assert tenant_a.key.prefix in page
    assert tenant_b.key.prefix not in page


def test_tenant_admin_cannot_open_other_tenants_object(client, alice, bob, tenant_b):
    client.force_login(alice)
    response = client.get(f"/admin/tenants/apikey/{tenant_b.key.pk}/change/")
    # The admin treats an object outside the queryset as missing: redirect, never the page.
    assert response.status_code == 302
    assert response.url == "/admin/"
    response = client.post(f"/admin/tenants/apikey/{tenant_b.key.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    with tenant_context(tenant_b.tenant):
        assert ApiKey.objects.filter(pk=tenant_b.key.pk).exists()


def test_tenant_admin_picker_offers_only_own_users(client, alice, bob):
    client.force_login(alice)
    page = client.get("/admin/tenants/membership/add/").content.decode()
    assert "alice@alpha.test" in page
    assert "bob@bravo.test" not in page


def test_tenant_admin_sees_only_own_tenant(client, alice, tenant_b):
    client.force_login(alice)
    page = client.get("/admin/tenants/tenant/").content.decode()
    assert "alpha" in page and "bravo" not in page


def test_tenant_admin_action_cannot_touch_other_tenant(client, alice, tenant_a, tenant_b):
    client.force_login(alice)
    client.post("/admin/tenants/apikey/", {
        "action": "revoke_keys", "_selected_action": [tenant_a.key.pk, tenant_b.key.pk]})
    with tenant_context(tenant_a.tenant):
        assert ApiKey.objects.get(pk=tenant_a.key.pk).revoked_at is not None
    with tenant_context(tenant_b.tenant):
        assert ApiKey.objects.get(pk=tenant_b.key.pk).revoked_at is None


def test_admin_creates_key_shown_once(client, alice, tenant_a):
    client.force_login(alice)
    response = client.post("/admin/tenants/apikey/add/", {
        "name": "from-admin", "scopes": "recommend"}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("mf_" in m for m in shown), shown
    with tenant_context(tenant_a.tenant):
        key = ApiKey.objects.get(name="from-admin")
    assert key.tenant_id == tenant_a.tenant.pk and key.scopes == ["recommend"]


def test_operator_sees_every_tenant(client, tenant_a, tenant_b):
    operator = get_user_model().objects.create_superuser("op", "op@platform.test", "pw-op-123")
    client.force_login(operator)
    page = client.get("/admin/tenants/apikey/").content.decode()
    assert tenant_a.key.prefix in page and tenant_b.key.prefix in page


def test_analyst_can_view_but_not_change(client, tenant_a):
    add_member(tenant_a.tenant, "ann@alpha.test", Role.ANALYST)
    analyst = get_user_model().objects.get(username="ann@alpha.test")
    client.force_login(analyst)
    assert client.get("/admin/tenants/apikey/").status_code == 200
    assert client.get("/admin/tenants/apikey/add/").status_code == 403


def test_tenant_admin_opens_the_key_add_and_change_pages(client, alice, tenant_a):
    client.force_login(alice)
    for url in ("/admin/tenants/apikey/add/",
                f"/admin/tenants/apikey/{tenant_a.key.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert 'name="tenant"' not in response.content.decode()  # set server-side for members
