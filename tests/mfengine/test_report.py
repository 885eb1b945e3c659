"""The evaluation report is plain JSON and compares against a previous report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mfengine
from mfengine.baselines import ContentRecommender, item_tokens
from mfengine.evaluation import temporal_split
from mfengine.report import build_report, compare_reports, primary_metric, to_plain
from mfengine.synthetic import generate


@pytest.fixture(scope="module")
def data():
    d = generate(400, 200, 12000, seed=1)
    split = temporal_split(d.user_ids, d.item_ids, d.timestamps, shape=(d.n_users, d.n_items))
    return d, split


def test_report_is_json_and_complete(data):
    d, (train, test) = data
    model = mfengine.create("als", factors=8, iterations=4, random_state=0).fit(train)
    content = ContentRecommender().fit(
        train, item_tokens(d.n_items, categories=list(d.item_categories), tags=d.item_tags)
    )
    report = build_report(
        model, train, test, ks=(5, 10), baselines={"content": content},
        dataset={"name": "synthetic", "content_hash": "abc"}, split={"kind": "temporal"},
    )
    text = json.dumps(report, allow_nan=False)
    again = json.loads(text)
    assert again == report
    assert set(report["baselines"]) == {"content", "popularity"}
    assert set(report["metrics"]) == {"overall", "cold_users", "long_tail"}
    assert set(report["metrics"]["overall"]["10"]) >= {"recall", "ndcg", "hit_rate", "map",
                                                      "coverage", "novelty", "gini"}
    assert len(report["loss_history"]) == 4
    hist = report["norm_histograms"]["items"]
    assert sum(hist["counts"]) == d.n_items and len(hist["bin_edges"]) == 21
    assert report["lorenz"]["recommendation_share"][-1] == pytest.approx(1.0)
    assert report["checks_passed"] is all(c["passed"] for c in report["checks"])
    assert report["comparison"] is None
    assert report["split"]["kind"] == "temporal"


def test_comparison_with_previous_report(data):
    _, (train, test) = data
    weak = mfengine.create("als", factors=2, iterations=1, random_state=0).fit(train)
    strong = mfengine.create("als", factors=16, iterations=8, random_state=0).fit(train)
    old = json.loads(json.dumps(build_report(weak, train, test, ks=(10,))))
    new = build_report(strong, train, test, ks=(10,), previous_report=old)
    json.dumps(new, allow_nan=False)
    cmp = new["comparison"]["metrics"]["overall"]["10"]["ndcg"]
    assert cmp["previous"] == primary_metric(old)
    assert cmp["current"] == primary_metric(new)
    assert cmp["delta"] == pytest.approx(cmp["current"] - cmp["previous"])
    assert cmp["relative"] == pytest.approx(cmp["delta"] / cmp["previous"])


def test_compare_reports_handles_zero_and_to_jsonable():
    cur = {"metrics": {"overall": {"10": {"ndcg": 0.2, "n_users": 3}}}}
    prev = {"metrics": {"overall": {"10": {"ndcg": 0.0, "n_users": 3}}}, "model": {"x": 1}}
    out = compare_reports(cur, prev)
    assert out["metrics"]["overall"]["10"] == {
        "ndcg": {"previous": 0.0, "current": 0.2, "delta": 0.2, "relative": None}
    }
    assert to_plain({"a": np.float32(1.5), 2: np.arange(2), "n": np.nan}) == {
        "a": 1.5, "2": [0, 1], "n": None
    }
