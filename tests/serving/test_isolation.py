"""Tenant A's serving never sees tenant B: B trained and served too, with very popular items,
its own rules and editorial picks, and ids A sends in exclude/recent_items/similar."""

import pytest

from mfplatform.catalog.models import Item
from mfplatform.registry.models import ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.serving.models import EditorialPick, EligibilityRule
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db


@pytest.fixture
def both(served, tenant_b):
    with tenant_b.scope():
        load_synthetic(tenant_b.tenant, synthetic(n_interactions=9000, seed=7), prefix="bravo-")
        version = execute_run(queue_run(tenant_b.tenant, make_plan(tenant_b.tenant, "main",
                                                                   **TEST_PLAN)))
        assert version.status == ModelStatus.ACTIVE, version.decision
        # B's rule would empty A's lists, B's pick would lead them.
        categories = sorted(set(Item.objects.values_list("category", flat=True)))
        EligibilityRule.objects.create(tenant=tenant_b.tenant, name="nothing",
                                       kind="category", params={"include": ["none-such"]})
        EligibilityRule.objects.create(tenant=tenant_b.tenant, name="diverse",
                                       kind="max_per_category", params={"max": 1})
        EditorialPick.objects.create(tenant=tenant_b.tenant, position=0,
                                     item=Item.objects.get(external_id="bravo-item-1"))
    with served.scope():
        a_items = set(Item.objects.values_list("external_id", flat=True))
    assert categories and a_items
    served.items = a_items
    return served


def _items(body):
    return [i["item"] for i in body["items"]]


def test_a_never_gets_b_items_rules_or_versions(both):
    client = both.client()
    queries = ["user=user-3&k=50", "user=bravo-user-3&k=50", "anonymous=true&k=200",
               "anonymous=true&k=30&recent_items=bravo-item-1,bravo-item-2&exclude=bravo-item-3",
               "user=user-3&k=30&explain=true&recent_items=bravo-item-1",
               "user=nobody&k=30&category=none-such"]
    for query in queries:
        response = client.get(f"/api/v1/recommendations?{query}")
        assert response.status_code == 200, (query, response.json())
        body = response.json()
        assert set(_items(body)) <= both.items, query
        assert "nothing" not in body["rules"] and "diverse" not in body["rules"], query
        assert body["model_version"]["id"] == both.version.pk, query
    # B's ids are unknown to A: as if they were not sent at all (and said to be unknown).
    plain = client.get("/api/v1/recommendations?anonymous=true&k=30").json()
    with_b = client.get("/api/v1/recommendations?anonymous=true&k=30&recent_items=bravo-item-1,"
                        "bravo-item-2&exclude=bravo-item-3").json()
    assert _items(plain) == _items(with_b) and with_b["personalised"] is False
    assert with_b["warnings"] == ["unknown items in recent_items/exclude, ignored: "
                                  "'bravo-item-1', 'bravo-item-2', 'bravo-item-3'"]
    # B's users are A's cold users: the same as any unknown user.
    assert _items(client.get("/api/v1/recommendations?user=bravo-user-3&k=30").json()) == \
        _items(client.get("/api/v1/recommendations?user=nobody-at-all&k=30").json())
    batch = client.post("/api/v1/recommendations",
                        {"users": ["user-1", "bravo-user-1"], "k": 20}, format="json").json()
    assert all(set(_items(r)) <= both.items for r in batch["results"])


def test_similar_and_rules_of_b_are_404_for_a(both):
    client = both.client()
    assert client.get("/api/v1/items/bravo-item-1/similar?k=5").status_code == 404
    similar = client.get("/api/v1/items/item-1/similar?k=40").json()
    assert len(similar["items"]) == 40 and set(_items(similar)) <= both.items
    with both.scope():
        assert not EligibilityRule.objects.exists()  # A sees none of B's rules
    assert client.get("/api/v1/rules").json()["results"] == []
