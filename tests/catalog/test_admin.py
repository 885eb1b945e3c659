"""The catalogue in the admin: a tenant admin's pages show only their tenant's rows; events are
view-only; deleting an end user takes their events with them."""

import pytest
from django.contrib.auth import get_user_model

from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import upsert_items
from mfplatform.catalog.models import EndUser, Event
from tenants.models import Role
from tenants.services import add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, tenant_a, tenant_b):
    for fixture, marker in ((tenant_a, "alpha"), (tenant_b, "bravo")):
        with fixture.scope():
            upsert_items(fixture.tenant, [{"external_id": f"{marker}-item",
                                           "title": f"{marker}-title"}])
            ingest_events(fixture.tenant, [{"user": f"{marker}-user", "item": f"{marker}-item",
                                            "type": "hide"}])
    add_member(tenant_a.tenant, "alice@alpha.test", Role.OWNER, password="pw-alice-123")
    client.force_login(get_user_model().objects.get(username="alice@alpha.test"))
    return client


@pytest.mark.parametrize("model", ["item", "enduser", "eventtype", "event", "suppression"])
def test_lists_show_only_own_tenant(alice, model):
    response = alice.get(f"/admin/catalog/{model}/")
    assert response.status_code == 200
    assert "bravo" not in response.content.decode()


def test_events_are_view_only(alice, tenant_a):
    with tenant_a.scope():
        event = Event.objects.get()
    assert alice.get("/admin/catalog/event/add/").status_code == 403
    page = alice.get(f"/admin/catalog/event/{event.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


def test_deleting_a_user_in_the_admin_deletes_their_events(alice, tenant_a):
    with tenant_a.scope():
        user = EndUser.objects.get(external_id="alpha-user")
    response = alice.post(f"/admin/catalog/enduser/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    with tenant_a.scope():
        assert not EndUser.objects.exists() and not Event.objects.exists()
