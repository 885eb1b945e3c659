"""Cold start through the real pipeline: new items placed by their content in the active
version's pgvector partition (mf_cold), exploration slots, onboarding and segment users."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from mfplatform.catalog.ingest import upsert_items, upsert_users
from mfplatform.catalog.models import EndUser, Item
from mfplatform.registry.artifacts import damaged_artifacts
from mfplatform.registry.cold import place_cold_items, place_in_version
from mfplatform.registry.models import ItemVector, ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.serving.cache import CACHE
from mfplatform.serving.exploration import generator, reserved_slots
from mfplatform.training.services import queue_run, update_plan
from tests.artifact_files import flip_a_byte
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db


def _get(fixture, query: str) -> dict:
    response = fixture.client().get(f"/api/v1/recommendations?{query}")
    assert response.status_code == 200, response.json()
    return response.json()


def _cluster_user(served, cluster: int) -> str:
    """A user of the planted taste cluster (whose events fall mostly in its category)."""
    return f"user-{int(np.flatnonzero(served.data.user_clusters == cluster)[0])}"


def _category(served, cluster: int) -> str:
    return str(served.data.item_categories[served.data.item_clusters == cluster][0])


def test_a_new_item_is_placed_by_its_content_and_recommended_as_mf_cold(served):
    category = _category(served, 0)
    with served.scope():
        upsert_items(served.tenant, [
            {"external_id": "new-tagged", "title": "New", "category": category,
             "tags": [f"{category}-1", f"{category}-2"]},
            {"external_id": "new-category-only", "category": category},
            {"external_id": "new-bare"}])
        assert place_cold_items(served.tenant) == {served.version.pk: 3}
        assert place_cold_items(served.tenant) == {served.version.pk: 0}  # placed once
        placed = dict(ItemVector.objects.filter(model_version=served.version, cold=True)
                      .values_list("item__external_id", "cold_placement"))
    assert placed == {"new-tagged": "attributes", "new-category-only": "category",
                      "new-bare": "catalogue"}

    body = _get(served, f"user={_cluster_user(served, 0)}&k=20&explain=true")
    by_id = {i["item"]: i for i in body["items"]}
    assert by_id["new-tagged"]["source"] == "mf_cold"
    assert by_id["new-tagged"]["reason"] == "new item, placed by its attributes"
    assert by_id["new-category-only"]["reason"] == "new item, placed with its category"
    assert {i["source"] for i in body["items"]} == {"mf", "mf_cold"}

    # Its neighbours are items of its category, by its placed vector.
    similar = served.client().get("/api/v1/items/new-tagged/similar?k=5").json()
    assert len(similar["items"]) == 5
    assert {i["source"] for i in similar["items"]} <= {"mf", "mf_cold"}
    with served.scope():
        categories = dict(Item.objects.values_list("external_id", "category"))
    assert sum(categories[i["item"]] == category for i in similar["items"]) >= 4

    # A user of another taste is not shown the item near the top.
    other = _get(served, f"user={_cluster_user(served, 3)}&k=5")
    assert "new-tagged" not in {i["item"] for i in other["items"]}


def test_a_damaged_mapping_places_nothing_and_marks_the_version_damaged(served, caplog):
    assert "cold.npz" in served.version.checksums
    flip_a_byte(served.version, "cold.npz")
    with served.scope():
        upsert_items(served.tenant, [{"external_id": "new-1", "category": "books"}])
        assert place_in_version(served.version) == 0
        assert not ItemVector.objects.filter(model_version=served.version, cold=True).exists()
    assert "checksum mismatch" in caplog.text
    assert damaged_artifacts(served.version).startswith("cold.npz")


def test_exploration_reserves_its_share_of_slots_for_new_items(served):
    with served.scope():
        upsert_items(served.tenant, [{"external_id": f"fresh-{i}", "category": "books"}
                                     for i in range(40)])
        place_cold_items(served.tenant)
        plan = served.version.plan
        update_plan(plan, config={**plan.config, "serving": {
            "exploration": {"share": 0.25, "max_item_age_days": 7}}})
    CACHE.clear()  # as a process that has not read the plan's serving options yet
    counts = []
    for _ in range(60):
        body = _get(served, "user=user-3&k=10&explain=true")
        explored = [i for i in body["items"] if i["source"] == "exploration"]
        assert all(i["item"].startswith("fresh-") and i["reason"] for i in explored)
        assert len(body["items"]) == 10
        counts.append(len(explored))
    # 2.5 slots a list: two or three, and about as often each over many recommendation ids.
    assert set(counts) == {2, 3}
    assert 2.3 <= np.mean(counts) <= 2.7


def test_exploration_shows_a_user_the_new_items_placed_nearest_their_taste(served):
    """Half the new items belong to one taste, half to another: a user of the first is
    shown the first's (a draw at random would show the other's about half the time); a
    request without a user still gets new items, drawn at random."""
    tastes = {0: _category(served, 0), 3: _category(served, 3)}
    with served.scope():
        upsert_items(served.tenant, [
            {"external_id": f"fresh-{cluster}-{i}", "category": category,
             "tags": [f"{category}-{i % 3}"]}
            for cluster, category in tastes.items() for i in range(15)])
        place_cold_items(served.tenant)
        plan = served.version.plan
        update_plan(plan, config={**plan.config, "serving": {
            "exploration": {"share": 0.2, "max_item_age_days": 7}}})
    CACHE.clear()
    for cluster in tastes:
        explored = []
        for _ in range(5):
            body = _get(served, f"user={_cluster_user(served, cluster)}&k=10")
            explored += [i["item"] for i in body["items"] if i["source"] == "exploration"]
        assert len(explored) == 10  # 2 slots a list
        assert all(item.startswith(f"fresh-{cluster}-") for item in explored), explored
    anonymous = [i for _ in range(5) for i in _get(served, "anonymous=true&k=10")["items"]
                 if i["source"] == "exploration"]
    assert len(anonymous) == 10


def test_a_plan_change_to_exploration_applies_to_the_next_request(served):
    """The options come with the request state (no cache to expire): switched on, the very
    next request explores."""
    with served.scope():
        upsert_items(served.tenant, [{"external_id": f"fresh-{i}", "category": "books"}
                                     for i in range(40)])
        place_cold_items(served.tenant)
    body = _get(served, "user=user-3&k=10")
    assert "exploration" not in {i["source"] for i in body["items"]}
    with served.scope():
        plan = served.version.plan
        update_plan(plan, config={**plan.config, "serving": {
            "exploration": {"share": 0.5, "max_item_age_days": 7}}})
    body = _get(served, "user=user-3&k=10")
    assert [i["source"] for i in body["items"]].count("exploration") == 5


def test_exploration_slots_are_reproducible_from_the_recommendation_id():
    options = {"share": 0.05, "max_item_age_days": 30}
    rid = uuid.uuid4()
    first = [reserved_slots(options, 10, generator(rid)) for _ in range(3)]
    assert len(set(first)) == 1
    slots = Counter(reserved_slots(options, 10, generator(uuid.UUID(int=i)))
                    for i in range(2000))
    assert set(slots) == {0, 1} and 0.4 < slots[1] / 2000 < 0.6  # 5% of 10 slots: 0.5


def test_old_items_are_not_explored(served):
    with served.scope():
        upsert_items(served.tenant, [{"external_id": "old-news", "category": "books"}])
        place_cold_items(served.tenant)
        Item.objects.filter(external_id="old-news").update(
            created_at=timezone.now() - timedelta(days=30))
        plan = served.version.plan
        update_plan(plan, config={**plan.config, "serving": {
            "exploration": {"share": 0.5, "max_item_age_days": 7}}})
    CACHE.clear()
    body = _get(served, "user=user-3&k=10")
    assert "exploration" not in {i["source"] for i in body["items"]}


def test_a_user_without_events_is_placed_by_onboarding_choices(served):
    category = _category(served, 2)
    picks = np.flatnonzero(served.data.item_clusters == 2)[:3]
    recent = ",".join(f"item-{i}" for i in picks)
    body = _get(served, f"user=newcomer&k=10&recent_items={recent}&explain=true")
    assert {i["source"] for i in body["items"]} == {"mf_onboarding"}
    in_category = sum(1 for i in body["items"]
                      if served.data.item_categories[int(i["item"].split("-")[1])] == category)
    assert in_category >= 5
    # Anonymous sessions keep their label.
    anonymous = _get(served, f"anonymous=true&k=5&recent_items={recent}")
    assert {i["source"] for i in anonymous["items"]} == {"mf"}


@pytest.fixture
def segmented(tenant_a):
    """Tenant A trained on users whose `segment` attribute is their planted taste cluster."""
    with tenant_a.scope():
        data = synthetic()
        load_synthetic(tenant_a.tenant, data)
        for cluster in range(int(data.user_clusters.max()) + 1):
            EndUser.objects.filter(external_id__in=[
                f"user-{u}" for u in np.flatnonzero(data.user_clusters == cluster)]).update(
                attributes={"segment": f"taste-{cluster}"})
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        version = execute_run(queue_run(tenant_a.tenant, plan))
    assert version.status == ModelStatus.ACTIVE, version.decision
    assert "segments.npz" in version.checksums
    tenant_a.data, tenant_a.version = data, version
    return tenant_a


def test_a_user_without_events_but_with_a_segment_gets_the_segment_vector(segmented):
    with segmented.scope():
        result = upsert_users(segmented.tenant, [
            {"external_id": "joiner", "attributes": {"segment": "taste-4"}},
            {"external_id": "stranger", "attributes": {"segment": "nobody-has-this"}},
            {"external_id": "plain"}])
    assert result.created == 3
    body = _get(segmented, "user=joiner&k=10&explain=true")
    assert {i["source"] for i in body["items"]} == {"mf_segment"}
    assert {i["reason"] for i in body["items"]} == {"liked by users of your segment"}
    category = _category(segmented, 4)
    in_category = sum(1 for i in body["items"] if segmented.data.item_categories[
        int(i["item"].split("-")[1])] == category)
    assert in_category >= 5
    for user in ("stranger", "plain"):
        assert {i["source"] for i in _get(segmented, f"user={user}&k=5")["items"]} == {
            "popularity"}


def test_user_attributes_are_kept_when_a_batch_does_not_name_them(segmented):
    with segmented.scope():
        upsert_users(segmented.tenant, [{"external_id": "joiner",
                                         "attributes": {"segment": "taste-1"}}])
        upsert_users(segmented.tenant, [{"external_id": "joiner", "consent": True}])
        assert EndUser.objects.get(external_id="joiner").attributes == {"segment": "taste-1"}
        bad = upsert_users(segmented.tenant, [{"external_id": "x", "attributes": [1]}])
    assert bad.rejected[0].field == "attributes"


def test_exploration_on_a_fallback_version_explores_nothing(tenant_a):
    """A tenant below the minimums serves a fallback version: it has no item vectors, so
    no new item to explore, and the request is answered as before."""
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(n_users=60, n_items=30, n_interactions=400))
        plan = make_plan(tenant_a.tenant, "main", **{
            **TEST_PLAN, "minimums": {"users": 10_000, "items": 20, "interactions": 500},
            "serving": {"exploration": {"share": 0.5}}})
        version = execute_run(queue_run(tenant_a.tenant, plan))
        upsert_items(tenant_a.tenant, [{"external_id": "fresh", "category": "books"}])
    assert version.kind == "fallback" and version.status == ModelStatus.ACTIVE
    body = _get(tenant_a, "user=user-1&k=10")
    assert len(body["items"]) == 10
    assert "exploration" not in {i["source"] for i in body["items"]}


def test_new_items_beyond_the_cached_vector_count_are_still_searched(served):
    """A web process caches the version row, its vector count included, before new items are
    placed: the candidate search must not stop at that count, or new items ranked below it
    are never found (after the index, only the trained items are scored exactly)."""

    def tags_of(cluster):
        return sorted({t for i in np.flatnonzero(served.data.item_clusters == cluster)
                       for t in served.data.item_tags[i]})[:3]

    user = _cluster_user(served, 0)
    _get(served, f"user={user}&k=5")  # the version row is cached now: 120 vectors
    with served.scope():
        # 200 new items of the user's taste rank above the 10 of another taste, which
        # therefore sit beyond the 120th row of the index
        upsert_items(served.tenant, [{"external_id": f"near-{i}", "category": "near",
                                      "tags": tags_of(0)} for i in range(200)]
                     + [{"external_id": f"far-{i}", "category": "far", "tags": tags_of(3)}
                        for i in range(10)])
        assert place_cold_items(served.tenant) == {served.version.pk: 210}
    body = _get(served, f"user={user}&k=5&category=far")
    assert [i["source"] for i in body["items"]] == ["mf_cold"] * 5
