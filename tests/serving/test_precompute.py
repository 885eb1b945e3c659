"""Precomputed top-N lists: the exact top items per user, replaced per plan."""

import threading
import time
from collections import Counter

import numpy as np
import pytest
from django.db import connection, transaction

from mfengine.testing import reference_top_n
from mfplatform.registry.models import ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.serving.bundle import load_bundle
from mfplatform.serving.models import PrecomputedRecommendation
from mfplatform.serving.precompute import precompute_top_n
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, make_plan

pytestmark = pytest.mark.django_db


def test_lists_are_every_users_exact_top_n(served):
    with served.scope():
        assert precompute_top_n(served.version, n=15) == 300
        stored = dict(PrecomputedRecommendation.objects.values_list("user_id", "items"))
        bundle = load_bundle(served.version)
    model = bundle.model
    expected, expected_scores = reference_top_n(model.score(model.user_factors_), 15)
    assert len(stored) == 300
    for row, user_pk in enumerate(bundle.user_ids.tolist()):
        items = stored[user_pk]
        assert [pk for pk, _s in items] == bundle.item_pks(expected[row]).tolist()
        np.testing.assert_allclose([s for _pk, s in items], expected_scores[row], atol=1e-5)


def test_precomputing_one_plan_keeps_the_other_plans_lists(served):
    with served.scope():
        other = execute_run(queue_run(served.tenant, make_plan(served.tenant, "other",
                                                               **TEST_PLAN)))
        assert other.status == ModelStatus.ACTIVE, other.decision
        assert precompute_top_n(served.version, n=10) == 300
        assert precompute_top_n(other, n=10) == 300
        assert precompute_top_n(other, n=10) == 300  # again: replaces its own lists
        counts = Counter(PrecomputedRecommendation.objects
                         .values_list("model_version_id", flat=True))
    assert counts == {served.version.pk: 300, other.pk: 300}


def _place_new_item(served) -> int:
    """A new item with the content of planted taste cluster 0, placed in the active version
    by its content (registry.cold); its pk."""
    from mfplatform.catalog.ingest import upsert_items
    from mfplatform.catalog.models import Item
    from mfplatform.registry.cold import place_cold_items

    category = str(served.data.item_categories[served.data.item_clusters == 0][0])
    upsert_items(served.tenant, [{"external_id": "new-tagged", "category": category,
                                  "tags": [f"{category}-1", f"{category}-2"]}])
    assert place_cold_items(served.tenant) == {served.version.pk: 1}
    return Item.objects.get(external_id="new-tagged").pk


def test_a_new_item_placed_by_its_content_enters_the_lists_where_it_scores_high_enough(
        served, django_capture_on_commit_callbacks):
    from mfplatform.registry.models import ItemVector, ModelVersion
    from mfplatform.registry.signals import items_placed

    placed_signals = []

    def receiver(sender, version, **kwargs):
        placed_signals.append(version.pk)

    items_placed.connect(receiver)
    try:
        with served.scope(), django_capture_on_commit_callbacks(execute=True):
            new_pk = _place_new_item(served)
    finally:
        items_placed.disconnect(receiver)
    assert placed_signals == [served.version.pk]  # serving precomputes again on it
    with served.scope():
        version = ModelVersion.objects.get(pk=served.version.pk)
        # the version's count includes the placed row (serving over-fetches up to it)
        assert version.n_item_vectors == 120 + 1
        assert ItemVector.objects.filter(model_version=version).count() == 121
        vector = np.asarray(ItemVector.objects.get(model_version=version, item_id=new_pk)
                            .embedding, np.float32)
        assert precompute_top_n(version, n=15) == 300
        stored = dict(PrecomputedRecommendation.objects.values_list("user_id", "items"))
        bundle = load_bundle(version)
    model = bundle.model
    new_scores = model.user_vectors(model.user_factors_) @ vector
    trained, trained_scores = reference_top_n(model.score(model.user_factors_), 15)
    listed = 0
    for row, user_pk in enumerate(bundle.user_ids.tolist()):
        items = stored[user_pk]
        assert len(items) == 15
        assert [s for _pk, s, *_ in items] == sorted((s for _pk, s, *_ in items), reverse=True)
        enters = new_scores[row] > trained_scores[row][-1]
        entry = next((e for e in items if e[0] == new_pk), None)
        assert (entry is not None) == enters, (row, new_scores[row], trained_scores[row][-1])
        if entry is not None:
            listed += 1
            assert entry[2] == "attributes" and entry[1] == pytest.approx(new_scores[row],
                                                                           abs=1e-4)
            # the rest are the trained top items, in order
            assert [e[0] for e in items if e[0] != new_pk] == (
                bundle.item_pks(trained[row][:14]).tolist())
    cluster_users = served.data.user_clusters == 0
    assert listed >= 0.5 * cluster_users.sum()  # it reaches the users of its taste


def test_a_precomputed_new_item_is_served_as_mf_cold(served):
    with served.scope():
        new_pk = _place_new_item(served)
        precompute_top_n(served.version, n=30)
        listed = [user_pk for user_pk, items in PrecomputedRecommendation.objects
                  .values_list("user__external_id", "items")
                  if any(e[0] == new_pk for e in items[:5])]
    assert listed
    body = served.client().get(
        f"/api/v1/recommendations?user={listed[0]}&k=10&precomputed=true&explain=true").json()
    assert body["precomputed"] is True
    by_id = {i["item"]: i for i in body["items"]}
    assert by_id["new-tagged"]["source"] == "mf_cold"
    assert by_id["new-tagged"]["reason"] == "new item, placed by its attributes"
    assert {i["source"] for i in body["items"]} == {"mf", "mf_cold"}


@pytest.mark.django_db(transaction=True)
def test_two_precomputes_of_one_plan_take_turns(served):
    """The second waits for the first to commit, then replaces its lists (it used to fail on
    the unique (version, user) constraint: neither saw the other's uncommitted rows)."""
    inserted, failures = threading.Event(), []

    def precompute_and_hold():
        try:
            with served.scope(), transaction.atomic():
                precompute_top_n(served.version, n=5)
                inserted.set()
                time.sleep(0.5)  # the second precompute starts before this one commits
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            inserted.set()
        finally:
            connection.close()

    first = threading.Thread(target=precompute_and_hold)
    first.start()
    assert inserted.wait(60)
    with served.scope():
        assert precompute_top_n(served.version, n=5) == 300
    first.join(60)
    assert not failures
    with served.scope():
        assert PrecomputedRecommendation.objects.count() == 300
