from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import upsert_items, upsert_users
from mfplatform.catalog.models import EventType
from tests.cross_tenant import B_MARKER, B_SECRET, Request, register

ITEM = f"item-{B_MARKER}"
USER = f"user-{B_MARKER}"


def _b_catalogue(tenant_b):
    upsert_items(tenant_b, [{"external_id": ITEM, "title": B_SECRET, "category": B_MARKER}])
    upsert_users(tenant_b, [{"external_id": USER}])
    ingest_events(tenant_b, [{"user": USER, "item": ITEM, "type": "click"}])


@register("api:item-list")
def _items(tenant_b):
    _b_catalogue(tenant_b)
    return [Request("GET", "/api/v1/items", expect=(200,)),
            Request("GET", f"/api/v1/items?category={B_MARKER}", expect=(200,)),
            # Upserting an id that B uses creates A's own item; B's stays untouched.
            Request("POST", "/api/v1/items", [{"external_id": ITEM, "title": "mine"}],
                    expect=(200,))]


@register("api:item-detail")
def _item(tenant_b):
    _b_catalogue(tenant_b)
    url = f"/api/v1/items/{ITEM}"
    return [Request("GET", url), Request("PATCH", url, {"title": "x"}),
            Request("DELETE", url)]


@register("api:user-list")
def _users(tenant_b):
    _b_catalogue(tenant_b)
    return [Request("GET", "/api/v1/users", expect=(200,))]


@register("api:user-detail")
def _user(tenant_b):
    _b_catalogue(tenant_b)
    url = f"/api/v1/users/{USER}"
    return [Request("GET", url), Request("PATCH", url, {"consent": False}),
            Request("DELETE", url)]


@register("api:eventtype-list", "api:eventtype-detail")
def _event_types(tenant_b):
    EventType.objects.create(tenant=tenant_b, name=B_MARKER)
    return [Request("GET", "/api/v1/event-types", expect=(200,)),
            Request("GET", f"/api/v1/event-types/{B_MARKER}"),
            Request("PATCH", f"/api/v1/event-types/{B_MARKER}", {"kind": "policy"})]


@register("api:event-list")
def _events(tenant_b):
    _b_catalogue(tenant_b)
    # B's item id is unknown to A: rejected, nothing written anywhere.
    return [Request("POST", "/api/v1/events", [{"user": "a-user", "item": ITEM,
                                                "type": "click"}], expect=(400,)),
            # B's event type name is unknown to A too.
            Request("POST", "/api/v1/events", [{"user": USER, "item": "x", "type": B_MARKER}],
                    expect=(400,))]
