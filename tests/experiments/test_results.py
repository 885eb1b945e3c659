"""Results on a tiny hand-made experiment (every number worked out by hand), attribution by
recommendation_id and by window, and the statistics against scipy's own."""

import uuid
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone
from scipy import stats

from mfplatform.catalog.models import EndUser, Event, Item
from mfplatform.experiments.impressions import BUFFER, ImpressionRow, flush_impressions
from mfplatform.experiments.models import Experiment
from mfplatform.experiments.results import (
    AttributedEvent,
    Design,
    ShownResponse,
    compute_results,
    experiment_results,
    holm,
    two_proportion_z,
    wilson,
)
from mfplatform.experiments.services import VariantInput, create_experiment, start_experiment
from tests.factories import make_model_version, make_plan


@pytest.fixture
def tiny(tenant_a):
    """10 items, 4 users; control (popularity) showed u1 [i0, i1] and u2 [i0, i2]; the model
    variant showed u3 [i3 (mf), i4 (content)] and u4 nothing (a fallback, empty)."""
    tenant = tenant_a.tenant
    with tenant_a.scope():
        items = Item.objects.bulk_create([Item(tenant=tenant, external_id=f"i{n}")
                                          for n in range(10)])
        users = EndUser.objects.bulk_create([EndUser(tenant=tenant, external_id=f"u{n}")
                                             for n in range(1, 5)])
        version = make_model_version(make_plan(tenant))
        experiment = create_experiment(tenant, "tiny", [
            VariantInput("control", "popularity", 0.5, is_control=True),
            VariantInput("model", "version", 0.5, model_version=version.pk)], min_samples=1)
        start_experiment(tenant, experiment)
        t0 = timezone.now() - timedelta(days=3)
        Experiment.objects.filter(pk=experiment.pk).update(started_at=t0)
        experiment.refresh_from_db()
    shown = [("control", users[0], [0, 1], ["popularity"] * 2, 10.0, False),
             ("control", users[1], [0, 2], ["popularity"] * 2, 20.0, False),
             ("model", users[2], [3, 4], ["mf", "content"], 30.0, False),
             ("model", users[3], [], [], 40.0, True)]
    rec_ids = []
    for variant, user, picks, sources, latency, fallback in shown:
        rec_ids.append(uuid.uuid4())
        BUFFER.add(ImpressionRow(tenant.pk, rec_ids[-1], "recommendations", user.external_id,
                                 user.pk, [items[p].pk for p in picks], sources, version.pk,
                                 experiment.pk, variant, latency, fallback,
                                 created_at=t0 + timedelta(minutes=1)))
    flush_impressions()
    tenant_a.experiment, tenant_a.t0, tenant_a.rec_ids = experiment, t0, rec_ids
    return tenant_a


def _events(tiny):
    at = tiny.t0 + timedelta(minutes=1)

    def when(delta):
        return (at + delta).isoformat()

    return [
        # by id: u1 clicked i1 in the first response
        {"user": "u1", "item": "i1", "type": "click", "timestamp": when(timedelta(minutes=5)),
         "recommendation_id": str(tiny.rec_ids[0]), "position": 2},
        # by window: u1 hid i0 ten minutes later; u3 clicked then bought i4
        {"user": "u1", "item": "i0", "type": "hide", "timestamp": when(timedelta(minutes=10))},
        {"user": "u3", "item": "i4", "type": "click", "timestamp": when(timedelta(hours=1))},
        {"user": "u3", "item": "i4", "type": "purchase", "timestamp": when(timedelta(hours=2))},
        # not attributed: past the 24 h window; an id that names no response
        {"user": "u2", "item": "i2", "type": "click", "timestamp": when(timedelta(hours=30))},
        {"user": "u2", "item": "i0", "type": "click", "timestamp": when(timedelta(hours=1)),
         "recommendation_id": str(uuid.uuid4())},
    ]


def test_results_of_a_tiny_experiment_are_the_hand_computed_numbers(tiny):
    response = tiny.client().post("/api/v1/events", _events(tiny), format="json")
    assert response.status_code in (200, 201), response.json()
    results = tiny.client().get(f"/api/v1/experiments/{tiny.experiment.pk}/results").json()
    control, model = results["variants"]
    assert control["variant"] == "control" and control["control"]
    assert control["impressions"] == 2 and control["items_shown"] == 4
    assert control["clicked"] == 1 and control["ctr"] == 0.5  # by id; u2's are not attributed
    assert control["hide_rate"] == 0.5 and control["report_rate"] == 0.0
    assert control["conversion"] == {}
    assert control["fallback_rate"] == 0.0 and control["empty_rate"] == 0.0
    assert control["latency_ms"] == {"p50": 15.0, "p95": 19.5, "p99": 19.9}
    # The head is the 2 most-interacted items (20% of 10): i0 and i4 (2 events each).
    assert control["long_tail_share"] == 0.5 and control["coverage"] == 0.3
    assert control["by_source"] == {"popularity": {"items_shown": 4, "clicks": 1,
                                                   "ctr": 0.25}}
    assert control["vs_control"] is None
    assert model["clicked"] == 1 and model["ctr"] == 0.5  # by window
    assert model["conversion"] == {"purchase": {"responses": 1, "rate": 0.5,
                                                "ci": wilson(1, 2)}}
    assert model["fallback_rate"] == 0.5 and model["empty_rate"] == 0.5
    assert model["long_tail_share"] == 0.5 and model["coverage"] == 0.2
    assert model["by_source"] == {"content": {"items_shown": 1, "clicks": 1, "ctr": 1.0},
                                  "mf": {"items_shown": 1, "clicks": 0, "ctr": 0.0}}
    assert model["vs_control"]["p_value"] == 1.0 and not model["vs_control"]["significant"]
    assert results["winner"] is None and "no significant" in results["reason"]
    assert results["method"]["correction"] == "holm"
    assert {row["variant"] for row in results["daily"]} == {"control", "model"}


def test_a_shorter_window_set_by_the_tenant_attributes_less(tiny):
    tiny.client().post("/api/v1/events", _events(tiny), format="json")
    tiny.tenant.settings = {"attribution_window_hours": 0.5}
    tiny.tenant.save()
    with tiny.scope():
        results = experiment_results(tiny.tenant, tiny.experiment)
    control, model = results["variants"]
    assert control["clicked"] == 1 and control["hide_rate"] == 0.5  # within 30 min
    assert model["clicked"] == 0 and model["conversion"] == {}  # 1 h and 2 h later


def test_the_csv_import_carries_recommendation_ids(tiny, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,type,when,rec,pos\n"
                    f"u1,i1,click,{(tiny.t0 + timedelta(minutes=3)).isoformat()},"
                    f"{tiny.rec_ids[0]},2\n")
    call_command("import_events", "alpha", str(path), "--map",
                 "user=user,item=item,type=type,timestamp=when,recommendation_id=rec,"
                 "position=pos", "--no-progress", stdout=StringIO(), stderr=StringIO())
    with tiny.scope():
        event = Event.objects.get()
        assert (event.recommendation_id, event.position) == (tiny.rec_ids[0], 2)
        assert experiment_results(tiny.tenant, tiny.experiment)["variants"][0]["clicked"] == 1


@pytest.mark.parametrize(("field", "value"), [("recommendation_id", "not-a-uuid"),
                                               ("position", 0), ("position", "first")])
def test_bad_attribution_fields_are_a_400_naming_them(tiny, field, value):
    response = tiny.client().post("/api/v1/events", [
        {"user": "u1", "item": "i1", "type": "click", field: value}], format="json")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["rejected"]] == [field]


def test_no_winner_before_the_minimum_sample(tiny):
    with tiny.scope():
        Experiment.objects.filter(pk=tiny.experiment.pk).update(min_samples=3)
        tiny.experiment.refresh_from_db()
        results = experiment_results(tiny.tenant, tiny.experiment)
    assert results["winner"] is None and "not enough impressions" in results["reason"]


def test_a_clearly_better_variant_wins_and_holm_adjusts_across_variants():
    day = timezone.localdate()
    shown, events = [], []
    rates = {"control": 0.10, "better": 0.20, "same": 0.10}
    for variant, rate in rates.items():
        for n in range(2000):
            pk = len(shown)
            shown.append(ShownResponse(pk, variant, [1], ["mf"], 5.0, False, day))
            if n < rate * 2000:
                events.append(AttributedEvent(pk, 1, "click", "positive"))
    results = compute_results(Design(list(rates), "control", min_samples=1000), shown,
                              events)
    better, same = results["variants"][1]["vs_control"], results["variants"][2]["vs_control"]
    assert results["winner"] == "better" and better["significant"]
    assert same["p_value"] == 1.0 and not same["significant"]
    assert better["p_adjusted"] == pytest.approx(min(1.0, 2 * better["p_value"]))


def test_the_statistics_agree_with_scipy():
    z, p = two_proportion_z(120, 1000, 90, 1000)
    chi2, p_chi2, _dof, _expected = stats.chi2_contingency(
        np.array([[120, 880], [90, 910]]), correction=False)
    assert z ** 2 == pytest.approx(chi2) and p == pytest.approx(p_chi2)
    low, high = wilson(120, 1000)
    centre, half = 0.12, 1.959964 * np.sqrt(0.12 * 0.88 / 1000)
    assert low < centre - 0.9 * half and high > centre + 0.9 * half  # close to Wald here
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
