from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import upsert_items
from mfplatform.serving.models import EligibilityRule
from tests.cross_tenant import B_MARKER, B_SECRET, Request, register

ITEM = f"item-{B_MARKER}"
USER = f"user-{B_MARKER}"


def _b_catalogue(tenant_b):
    upsert_items(tenant_b, [{"external_id": ITEM, "title": B_SECRET, "category": "c"}])
    ingest_events(tenant_b, [{"user": USER, "item": ITEM, "type": "purchase"}] * 3)


@register("api:recommendations")
def _recommendations(tenant_b):
    _b_catalogue(tenant_b)
    # B's user is unknown to A (a cold user of A's, with no items); B's items are unknown ids
    # in exclude/recent_items, never returned.
    return [Request("GET", f"/api/v1/recommendations?user={USER}&k=5", expect=(200,)),
            Request("GET", f"/api/v1/recommendations?anonymous=true&k=5&recent_items={ITEM}"
                           f"&exclude={ITEM}",
                    expect=(200,)),
            Request("POST", "/api/v1/recommendations", {"users": [USER], "k": 5},
                    expect=(200,))]


@register("api:item-similar")
def _similar(tenant_b):
    _b_catalogue(tenant_b)
    return [Request("GET", f"/api/v1/items/{ITEM}/similar?k=5")]


@register("api:rule-list", "api:rule-detail")
def _rules(tenant_b):
    rule = EligibilityRule.objects.create(tenant=tenant_b, name=B_SECRET, kind="category",
                                          params={"exclude": [B_MARKER]})
    url = f"/api/v1/rules/{rule.pk}"
    return [Request("GET", "/api/v1/rules", expect=(200,)), Request("GET", url),
            Request("PATCH", url, {"enabled": False}), Request("DELETE", url)]
