"""The product as a user drives it, over real HTTP with a real worker:
create tenant (command) -> ingest items and events -> train -> promote -> recommend with a
rule -> roll back -> recommend again from the previous version."""

import json
import time
import urllib.error
import urllib.request
from io import StringIO

import pytest
from django.core.management import call_command

from tests.conftest import wait_for
from tests.factories import synthetic

pytestmark = pytest.mark.django_db(transaction=True)


class Http:
    def __init__(self, base: str, key: str):
        self.base, self.key = base, key

    def __call__(self, method: str, path: str, body=None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


def _train(http, plan_id, worker) -> dict:
    status, run = http("POST", f"/api/v1/plans/{plan_id}/train")
    assert status == 202, run

    def finished():
        _s, body = http("GET", f"/api/v1/runs/{run['id']}")
        return body if body["status"] in ("succeeded", "failed") else None

    done = wait_for(finished, timeout=120, worker=worker)
    assert done["status"] == "succeeded", done["error"]
    return done


def test_product_journey(live_server, celery_worker_process):
    out = StringIO()
    call_command("create_tenant", "journey", "--name", "Journey", "--json", stdout=out)
    http = Http(live_server.url, json.loads(out.getvalue())["api_key"])

    data = synthetic(n_users=250, n_items=100, n_interactions=5000, seed=3)
    status, body = http("POST", "/api/v1/items", [
        {"external_id": f"sku-{i}", "title": str(data.item_titles[i]),
         "category": str(data.item_categories[i]), "tags": list(data.item_tags[i])}
        for i in range(data.n_items)])
    assert status == 200 and body["created"] == 100
    rows = [{"user": f"u{u}", "item": f"sku-{i}", "type": t, "timestamp": int(ts),
             "event_id": f"e{n}"}
            for n, (u, i, t, ts) in enumerate(zip(data.user_ids.tolist(),
                                                  data.item_ids.tolist(),
                                                  data.event_types.tolist(),
                                                  data.timestamps.tolist(), strict=True))]
    status, body = http("POST", "/api/v1/events", rows)
    assert status == 200 and body["created"] == 5000

    config = {"events": {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
              "training": {"strategy": "als", "factors": 16, "iterations": 8,
                           "regularization": 1.0},
              "evaluation": {"k": [10]},
              "promotion": {"auto_promote": False}}
    status, plan = http("POST", "/api/v1/plans", {"name": "main", "config": config})
    assert status == 201, plan
    first = _train(http, plan["id"], celery_worker_process)
    status, v1 = http("GET", f"/api/v1/models/{first['model_version']}")
    assert v1["status"] == "candidate" and v1["decision"]["verdict"] == "pass"
    status, _log = http("POST", f"/api/v1/models/{v1['id']}/promote",
                        {"reason": "first model, report reviewed"})
    assert status == 200

    status, rule = http("POST", "/api/v1/rules", {"name": "no-books", "kind": "category",
                                                  "params": {"exclude": ["books"]}})
    assert status == 201, rule
    status, recs = http("GET", "/api/v1/recommendations?user=u1&k=10")
    assert status == 200 and recs["model_version"]["id"] == v1["id"]
    assert "no-books" in recs["rules"] and len(recs["items"]) == 10
    categories = {f"sku-{i}": str(c) for i, c in enumerate(data.item_categories)}
    assert all(categories[i["item"]] != "books" for i in recs["items"])

    # A second model with another strategy, let through the relative thresholds on purpose (an
    # operator trying it); whatever the gate says of it, the operator promotes it with an
    # override (audited), then rolls back.
    status, _plan = http("PATCH", f"/api/v1/plans/{plan['id']}", {"config": {
        **config, "training": {"strategy": "bpr", "factors": 16, "iterations": 20},
        "promotion": {"auto_promote": False, "min_improvement_over_active": -1.0,
                      "min_improvement_over_popularity": -1.0}}})
    assert status == 200
    second = _train(http, plan["id"], celery_worker_process)
    v2_id = second["model_version"]

    def decided():
        # The run is marked succeeded before the gate decides (it re-measures the active
        # model on the candidate's split first): act on the gate's verdict, not before it.
        _s, body = http("GET", f"/api/v1/models/{v2_id}")
        return body if (body.get("decision") or {}).get("verdict") else None

    v2 = wait_for(decided, timeout=120, worker=celery_worker_process)
    override = v2["status"] == "rejected"
    status, log = http("POST", f"/api/v1/models/{v2_id}/promote",
                       {"reason": "try bpr", "override": override})
    assert status == 200, log
    assert log["from_version"] == v1["id"]
    status, recs = http("GET", "/api/v1/recommendations?user=u1&k=10")
    assert recs["model_version"]["id"] == v2_id
    status, log = http("POST", f"/api/v1/models/{v2_id}/rollback",
                       {"reason": "bpr lists looked worse"})
    assert status == 200 and log["to_version"] == v1["id"]
    started = time.monotonic()
    status, recs = http("GET", "/api/v1/recommendations?user=u1&k=10")
    assert recs["model_version"]["id"] == v1["id"]  # the very next request, no delay
    assert time.monotonic() - started < 30
    assert all(categories[i["item"]] != "books" for i in recs["items"])
