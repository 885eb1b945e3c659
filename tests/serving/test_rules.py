"""Rules hold on every response: random rule sets over a randomised catalogue."""

import warnings
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from django.utils import timezone

from mfplatform.catalog.models import EndUser, Event, Item, Suppression
from mfplatform.serving import rules as rules_module
from mfplatform.serving.bundle import load_bundle
from mfplatform.serving.models import EligibilityRule

pytestmark = pytest.mark.django_db


def _randomise_catalogue(tenant, rng):
    """Prices, availability, bans and deletions at random; returns nothing (stored)."""
    for item in Item.objects.filter(tenant=tenant):
        item.attributes = {"price": int(rng.integers(1, 100)),
                           "brand": str(rng.choice(["acme", "globex", "initech"]))}
        item.is_available = bool(rng.random() > 0.1)
        item.banned_at = timezone.now() if rng.random() < 0.05 else None
        item.deleted_at = timezone.now() if rng.random() < 0.05 else None
        item.save()


def _random_rules(tenant, rng, categories):
    EligibilityRule.objects.filter(tenant=tenant).delete()
    chosen = []
    if rng.random() < 0.6:
        picked = list(rng.choice(categories, size=int(rng.integers(1, 4)), replace=False))
        key = "include" if rng.random() < 0.5 else "exclude"
        chosen.append(("category", {key: [str(c) for c in picked]}))
    if rng.random() < 0.6:
        low = int(rng.integers(1, 50))
        chosen.append(("attribute", {"key": "price", "op": "range", "min": low,
                                     "max": low + int(rng.integers(10, 60))}))
    if rng.random() < 0.4:
        chosen.append(("attribute", {"key": "brand", "op": "in",
                                     "values": ["acme", "globex"]}))
    if rng.random() < 0.5:
        chosen.append(("max_per_category", {"max": int(rng.integers(1, 4))}))
    for n, (kind, params) in enumerate(chosen):
        EligibilityRule.objects.create(tenant=tenant, name=f"r{n}-{kind}", kind=kind,
                                       params=params)
    return chosen


def _passes_static(item, chosen, seen, suppressed):
    if not item.is_available or item.is_placeholder or item.banned_at or item.deleted_at:
        return False
    if item.id in seen or item.id in suppressed:
        return False
    for kind, params in chosen:
        if kind == "category":
            if params.get("include") and item.category not in params["include"]:
                return False
            if item.category in params.get("exclude", []):
                return False
        if kind == "attribute":
            value = item.attributes.get(params["key"])
            if params["op"] == "range" and not (params["min"] <= value <= params["max"]):
                return False
            if params["op"] == "in" and value not in params["values"]:
                return False
    return True


@pytest.mark.parametrize("seed", range(6))
def test_rules_hold_and_k_items_come_back_when_k_are_eligible(served, seed):
    rng = np.random.default_rng(seed)
    with served.scope():
        tenant = served.tenant
        _randomise_catalogue(tenant, rng)
        categories = sorted(set(Item.objects.values_list("category", flat=True)))
        chosen = _random_rules(tenant, rng, categories)
        user = EndUser.objects.get(external_id=f"user-{seed}")
        hidden = Item.objects.filter(tenant=tenant).order_by("?")[:3]
        for item in hidden:
            Suppression.objects.get_or_create(tenant=tenant, user=user, item=item,
                                              defaults={"reason": "hide"})
        seen = set(Event.objects.filter(user=user).values_list("item_id", flat=True))
        suppressed = set(Suppression.objects.filter(user=user).values_list("item_id",
                                                                           flat=True))
        model_items = set(load_bundle(served.version).item_ids.tolist())
        items = {i.id: i for i in Item.objects.filter(tenant=tenant)}
    cap = dict(chosen).get("max_per_category", {}).get("max")
    eligible = [i for pk, i in items.items()
                if pk in model_items and _passes_static(i, chosen, seen, suppressed)]
    per_category: dict[str, int] = {}
    for item in eligible:
        per_category[item.category] = per_category.get(item.category, 0) + 1
    reachable = sum(min(n, cap) if cap else n for n in per_category.values())
    k = int(rng.integers(5, 40))

    response = served.client().get(f"/api/v1/recommendations?user=user-{seed}&k={k}")
    assert response.status_code == 200
    body = response.json()
    returned = [i["item"] for i in body["items"]]
    by_external = {i.external_id: i for i in items.values()}
    assert len(returned) == len(set(returned)), "duplicates"
    assert len(returned) == min(k, reachable), (k, reachable, chosen)
    counts: dict[str, int] = {}
    for external_id in returned:
        item = by_external[external_id]
        assert _passes_static(item, chosen, seen, suppressed), (external_id, chosen)
        counts[item.category] = counts.get(item.category, 0) + 1
    if cap:
        assert max(counts.values(), default=0) <= cap
    assert body["rules"][:4] == ["available_only", "not_banned", "not_suppressed",
                                 "not_interacted"]
    assert body["rules"][4:] == [f"r{n}-{kind}" for n, (kind, _p) in enumerate(chosen)]


def test_rules_api_validates_params_by_kind(tenant_a):
    client = tenant_a.client()
    bad = client.post("/api/v1/rules", {"name": "x", "kind": "attribute",
                                        "params": {"key": "price", "op": "between"}},
                      format="json")
    assert bad.status_code == 400 and "op" in bad.json()["errors"]["params"]
    unknown = client.post("/api/v1/rules", {"name": "y", "kind": "teleport"}, format="json")
    assert unknown.status_code == 400 and "unknown rule kind" in unknown.json()["errors"][
        "kind"][0]
    ok = client.post("/api/v1/rules", {"name": "diverse", "kind": "max_per_category",
                                       "params": {"max": 2}}, format="json")
    assert ok.status_code == 201
    assert client.patch(f"/api/v1/rules/{ok.json()['id']}", {"params": {"max": 0}},
                        format="json").status_code == 400


def test_plugin_rule_is_registered_and_applied(served):
    assert "title_excludes" in rules_module.rule_kinds()
    with served.scope():
        word = Item.objects.get(external_id="item-0").title.split()[0]
        EligibilityRule.objects.create(tenant=served.tenant, name="no-word",
                                       kind="title_excludes", params={"words": [word]})
        titles = dict(Item.objects.values_list("external_id", "title"))
    body = served.client().get("/api/v1/recommendations?user=user-1&k=30").json()
    assert "no-word" in body["rules"]
    assert all(word.lower() not in titles[i["item"]].lower() for i in body["items"])


def test_broken_rule_plugin_warns_and_builtins_survive(monkeypatch):
    broken = EntryPoint("broken", "no_such_module:Rule", "mfplatform.rules")
    taken = EntryPoint("category", "mfplatform.serving.rules:NotBanned", "mfplatform.rules")
    real = rules_module.entry_points

    def fake(group):
        return [*real(group=group), broken, taken]

    monkeypatch.setattr(rules_module, "entry_points", fake)
    rules_module.rule_kinds.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kinds = rules_module.rule_kinds()
        messages = [str(w.message) for w in caught]
        assert any("'broken' failed to load" in m for m in messages)
        assert any("'category' reuses a taken name" in m for m in messages)
        assert kinds["category"] is rules_module.CategoryFilter
        assert "available_only" in kinds
    finally:
        rules_module.rule_kinds.cache_clear()


def test_a_catalogue_the_rules_mostly_turn_away_costs_few_queries(tenant_a, monkeypatch):
    """Offering a whole catalogue (the last fallback) loads item rows in growing chunks: a
    category cap that rejects nearly everything must not mean one query per 100 items."""
    from mfplatform.serving import selector as selector_module
    from mfplatform.serving.rules import RuleContext, make_rule

    loads = []
    load_items = selector_module.load_items
    monkeypatch.setattr(selector_module, "load_items",
                        lambda tenant, pks: (loads.append(len(pks)), load_items(tenant, pks))[1])
    with tenant_a.scope():
        Item.objects.bulk_create([Item(tenant=tenant_a.tenant, external_id=f"i{n}",
                                       category="one") for n in range(1500)])
        pks = list(Item.objects.filter(tenant=tenant_a.tenant).values_list("pk", flat=True))
        selector = selector_module.Selector(
            tenant_a.tenant, [make_rule("max_per_category", {"max": 2})],
            RuleContext(tenant=tenant_a.tenant, user=None, now=timezone.now()), 5, set())
        selector.offer(pks, np.zeros(len(pks)), "popularity")
    assert len(selector.picks) == 2 and selector.filtered == {"max_per_category": 1498}
    assert loads == [100, 200, 400, 800]  # 1,500 rows in 4 statements; was 15

