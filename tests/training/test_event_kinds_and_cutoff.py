"""What a run trains on: every event before the cutoff (to the last second), and popularity
that only positive events can raise."""

from datetime import timedelta

import numpy as np
import pytest

from mfplatform.catalog.models import Event
from mfplatform.registry.models import ModelKind
from mfplatform.registry.runs import execute_run
from mfplatform.serving.bundle import load_bundle
from mfplatform.training.models import PlanRevision, RunStatus
from mfplatform.training.services import queue_run
from tests.factories import make_plan

pytestmark = pytest.mark.django_db

ITEMS = [{"external_id": f"sku-{i}", "title": f"Item {i}", "category": "shop"} for i in range(6)]


def _ingest(fixture, rows, path="events"):
    response = fixture.client().post(f"/api/v1/{path}", rows, format="json")
    assert response.status_code in (200, 201), response.json()


def _liked_and_reported(fixture):
    """sku-0: clicked by 3 users. sku-5: reported, hidden and disliked by 60 users each."""
    _ingest(fixture, ITEMS, "items")
    _ingest(fixture, [{"user": f"fan-{u}", "item": "sku-0", "type": "click"} for u in range(3)])
    _ingest(fixture, [{"user": f"troll-{u}", "item": "sku-5", "type": kind}
                      for u in range(60) for kind in ("report", "hide", "dislike")])


def test_events_ingested_just_before_the_cutoff_are_trained_on(tenant_a):
    _ingest(tenant_a, ITEMS, "items")
    _ingest(tenant_a, [{"user": f"user-{u}", "item": f"sku-{u % 6}", "type": "click"}
                       for u in range(12)])
    with tenant_a.scope():
        newest = Event.objects.order_by("-timestamp").first().timestamp
        plan = make_plan(tenant_a.tenant, "now", events={"click": 1}, window={"days": 1})
        # Train at once: the cutoff lies within the same second as the newest events.
        run = queue_run(tenant_a.tenant, plan, cutoff=newest + timedelta(milliseconds=1))
        execute_run(run)
        run.refresh_from_db()
        dataset = run.dataset_version
    assert run.status == RunStatus.SUCCEEDED
    assert dataset.counts.get("dropped_after_cutoff") == 0, dataset.counts
    assert dataset.n_interactions == 12


def test_training_popularity_counts_positive_kinds_only(tenant_a):
    _liked_and_reported(tenant_a)
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant, "all-kinds", events={"click": 1})
        # A plan that weights every kind as interest and lists no negatives (stored before
        # validation could refuse it): the catalogue's kinds still decide.
        weights = {"click": 1, "report": 1, "hide": 1, "dislike": 1}
        PlanRevision.objects.filter(plan=plan).update(config={
            **plan.config, "events": weights, "negative_events": []})
        run = queue_run(tenant_a.tenant, plan)
        version = execute_run(run)
        assert version.kind == ModelKind.FALLBACK
        bundle = load_bundle(version)
    pks, _scores = bundle.popular()
    with tenant_a.scope():
        ranked = dict(zip(pks.tolist(), range(len(pks)), strict=True))
        from mfplatform.catalog.models import Item

        liked = Item.objects.get(external_id="sku-0").pk
        reported = Item.objects.get(external_id="sku-5").pk
    assert ranked[liked] == 0
    assert reported not in ranked or ranked[reported] > ranked[liked]
    assert np.all(np.isfinite(_scores))


def test_recent_popularity_without_a_model_ignores_negative_and_policy_events(tenant_a):
    _liked_and_reported(tenant_a)
    response = tenant_a.client().get("/api/v1/recommendations?user=newcomer&k=6")
    assert response.status_code == 200, response.json()
    items = [row["item"] for row in response.json()["items"]]
    assert items[0] == "sku-0"
    assert "sku-5" not in items[:1]
