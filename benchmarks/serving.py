"""Serving latency and throughput under load, and HNSW recall against exact search.

    .venv/bin/python benchmarks/serving.py [--items 100000 --users 50000 --events 500000]

A throwaway database; a synthetic catalogue of 100k items and a model trained by the real
pipeline (ALS, 64 factors) with its item vectors in pgvector under an HNSW index; gunicorn on
loopback (2 workers x 8 threads); 16 client threads with keep-alive connections send a fixed
number of GET /api/v1/recommendations (k=20, three tenant rules on); p50/p99 and requests/s.
Then recall@100 of the index (with the ef_search serving uses) against exact inner-product
search in numpy for a sample of users.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (  # noqa: E402
    ROOT,
    bench_database,
    command_line,
    machine_line,
    write_section,  # noqa: E402
)
from benchmarks.ingest import free_port  # noqa: E402

CONCURRENCY = 16


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args()


def load(args):
    import django

    django.setup()
    from benchmarks.pipeline import load_data
    from mfengine.synthetic import generate
    from mfplatform.serving.models import EligibilityRule
    from mfplatform.training.pipeline import execute_run
    from mfplatform.training.services import create_plan, queue_run
    from tenants.context import tenant_context
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.create(slug="bench", name="bench")
    data = generate(n_users=args.users, n_items=args.items, n_interactions=args.events,
                    seed=1, start=int(time.time()) - 61 * 86400, days=60)
    with tenant_context(tenant):
        load_data(tenant, data)
        plan = create_plan(tenant, "bench", {
            "events": {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
            "training": {"strategy": "als", "factors": 64, "iterations": 10,
                         "regularization": 5.0},
            "evaluation": {"k": [10], "max_users": 2000},
            "promotion": {"min_improvement_over_popularity": -1.0,
                          "max_popularity_concentration": 1.0}})
        started = time.perf_counter()
        version = execute_run(queue_run(tenant, plan))
        print(f"trained and published in {time.perf_counter() - started:.1f} s: "
              f"{version.status} ({'; '.join(version.decision.get('reasons', []))}), "
              f"{version.n_item_vectors:,} item vectors", flush=True)
        if version.status != "active":
            raise SystemExit("the model was not promoted: nothing to measure")
        for name, kind, params in (
                ("no-toys", "category", {"exclude": ["toys"]}),
                ("diverse", "max_per_category", {"max": 4}),
                ("not-bought", "not_interacted", {"event_types": ["purchase"]})):
            EligibilityRule.objects.create(tenant=tenant, name=name, kind=kind, params=params)
        _key, raw = ApiKey.issue(tenant, ["recommend"])
    return tenant, version, raw, data


def load_test(port: int, key: str, users: list[str], total: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    errors: list[str] = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            user = users[n % len(users)]
            started = time.perf_counter()
            conn.request("GET", f"/api/v1/recommendations?user={user}&k=20",
                         headers={"Authorization": f"Bearer {key}"})
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or len(json.loads(body)["items"]) != 20:
                errors.append(f"{response.status} {body[:200]!r}")
            with lock:
                latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} bad responses, e.g. {errors[0]}")
    return latencies, wall


def hnsw_recall(tenant, version, sample: int = 200, k: int = 100) -> tuple[float, float]:
    from mfplatform.registry.vectors import nearest_items
    from mfplatform.serving.bundle import load_bundle
    from tenants.context import tenant_context

    with tenant_context(tenant):
        bundle = load_bundle(version)
        model = bundle.model
        items = model.item_vectors()
        rng = np.random.default_rng(0)
        rows = rng.choice(model.user_factors_.shape[0], sample, replace=False)
        recalls, elapsed = [], 0.0
        for row in rows:
            query = model.user_vectors(model.user_factors_[row])[0]
            exact = set(bundle.item_pks(np.argsort(-(items @ query))[:k]).tolist())
            started = time.perf_counter()
            found = {pk for pk, _s in nearest_items(version, query, k, ef_search=k)}
            elapsed += time.perf_counter() - started
            recalls.append(len(found & exact) / k)
    return float(np.mean(recalls)), elapsed / sample * 1000


def main() -> None:
    args = parse_args()
    with bench_database("mfbench_serving"):
        tenant, version, key, data = load(args)
        port = free_port()
        server = start_server_threads(port)
        try:
            users = [f"user-{u}" for u in np.random.default_rng(1).choice(args.users, 2000)]
            load_test(port, key, users[:200], 300)  # warm-up: model loads in each worker
            latencies, wall = load_test(port, key, users, args.requests)
        finally:
            server.terminate()
            server.wait(timeout=30)
        recall, query_ms = hnsw_recall(tenant, version)
    ms = np.array(latencies) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    rps = len(latencies) / wall
    markdown = f"""## Serving: recommendations under load, HNSW recall

`{command_line()}` — {machine_line()}

{args.items:,} items, {args.users:,} users, {args.events:,} synthetic events; ALS 64 factors
trained by the pipeline, item vectors in pgvector 0.6 under the version's HNSW index (m 16,
ef_construction 64). gunicorn 2 workers x 8 threads on loopback; {CONCURRENCY} client threads
(keep-alive) in the same machine, {args.requests:,} requests of `GET /api/v1/recommendations
?user=<random known user>&k=20` with the four default rules plus three tenant rules
(category exclude, max 4 per category, not-purchased); every response checked for 20 items.

| measure | value | goal |
|---|---|---|
| p50 latency | {p50:.1f} ms | |
| p99 latency | {p99:.1f} ms | <= 25 ms: {"met" if p99 <= 25 else "NOT met"} |
| throughput | {rps:,.0f} requests/s | >= 300: {"met" if rps >= 300 else "NOT met"} |
| HNSW recall@100 vs exact (200 users, ef_search 100) | {recall:.3f} | >= 0.95: {
    "met" if recall >= 0.95 else "NOT met"} |
| one index query (k=100), from Python | {query_ms:.2f} ms | |

Where a request's time goes (cProfile of `recommend()` in-process on the demo tenant: 6.4 ms
per request before the HTTP stack): about 13 database round trips per request (API key lookup
inside a narrow RLS bypass, which costs three statements to set and reset; the tenant scope
set and cleared; the active version; the user; their history; their suppressions; the
tenant's rules; the candidate items' rows; the vector search) at 0.2-0.4 ms each, Django's
query compilation for the ORM ones, and JSON encoding. The 16 load-generating client threads
share the same 2 cores. What would close the gap: one round trip for the tenant scope and the
key lookup (a security-barrier view or a session cache of verified keys for a few seconds),
caching the tenant's active version and rules per process with invalidation on promotion
(LISTEN/NOTIFY), raw SQL for the hot lookups, and the load generator on another machine.
"""
    print(markdown)
    if not args.no_write:
        write_section("serving", markdown)


def start_server_threads(port: int) -> subprocess.Popen:
    import os
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "2", "--threads", "8", "--worker-class", "gthread"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("server did not start")


if __name__ == "__main__":
    main()
