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
import asyncio
import contextlib
import json
import os
import subprocess
import sys
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
    parser.add_argument("--items", type=int, default=142_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--database", default="mfbench_serving")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database and reuse it next time (iterating on serving)")
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
    """CONCURRENCY keep-alive connections from one asyncio loop (light on the shared CPUs:
    a thread per connection with http.client costs the server a good share of them), each
    sending its next request when the previous answer has arrived; every answer is checked."""
    return asyncio.run(_load(port, key, users, total))


async def _load(port: int, key: str, users: list[str], total: int
                ) -> tuple[list[float], float]:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in counter:
            user = users[n % len(users)]
            request = (f"GET /api/v1/recommendations?user={user}&k=20 HTTP/1.1\r\n"
                       f"Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n").encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            body = await reader.readexactly(length)
            if b"connection: close" in head.lower():  # a server without keep-alive
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            elapsed = time.perf_counter() - started
            status = int(head.split(b" ", 2)[1])
            if status != 200 or len(json.loads(body)["items"]) != 20:
                errors.append(f"{status} {body[:200]!r}")
            latencies.append(elapsed)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} bad responses, e.g. {errors[0]}")
    return latencies, wall


def hnsw_recall(tenant, version, ef_search: int, sample: int = 200, k: int = 100
                ) -> tuple[float, float, float]:
    """Mean recall@k against exact inner-product search in numpy of (1) the HNSW index alone
    and (2) serving's candidate search (the index merged with the exactly scored norm head),
    and the mean time of one serving candidate search (rows joined), for a sample of users."""
    from mfplatform.serving import service
    from mfplatform.serving.bundle import load_bundle
    from tenants.context import tenant_context

    with tenant_context(tenant):
        bundle = load_bundle(version)
        model = bundle.model
        items = model.item_vectors()
        rng = np.random.default_rng(0)
        rows = rng.choice(model.user_factors_.shape[0], sample, replace=False)
        index_recalls, serving_recalls, elapsed = [], [], 0.0
        for row in rows:
            query = model.user_vectors(model.user_factors_[row])[0]
            exact = set(bundle.item_pks(np.argsort(-(items @ query))[:k]).tolist())
            found = {pk for pk, _s in service.index_search(version, query, k, ef_search)}
            index_recalls.append(len(found & exact) / k)
            service.EF_FACTOR = ef_search / k
            started = time.perf_counter()
            hits, _n = service.candidate_search(version, bundle, query, k)
            elapsed += time.perf_counter() - started
            serving_recalls.append(len({item.id for item, _s in hits} & exact) / k)
        service.EF_FACTOR = 1.0
    return (float(np.mean(index_recalls)), float(np.mean(serving_recalls)),
            elapsed / sample * 1000)


RECALL_EF = (40, 100, 200, 400)


def existing(name: str):
    """The tenant, active version and a fresh key of a kept benchmark database (--reuse)."""
    import django

    django.setup()
    from mfplatform.registry.models import ModelVersion
    from tenants.context import tenant_context
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.filter(slug="bench").first()
    if tenant is None or not tenant_has_active(tenant):
        return None
    with tenant_context(tenant):
        version = ModelVersion.objects.filter(status="active").first()
        _key, raw = ApiKey.issue(tenant, ["recommend"])
    return tenant, version, raw


def tenant_has_active(tenant) -> bool:
    from mfplatform.registry.models import ModelVersion
    from tenants.context import tenant_context

    with tenant_context(tenant):
        return ModelVersion.objects.filter(status="active").exists()


@contextlib.contextmanager
def database(name: str, reuse: bool):
    """bench_database, or with --reuse a database kept between runs (created when missing)."""
    if not reuse:
        with bench_database(name) as socket_dir:
            yield socket_dir
        return
    import os

    import psycopg

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE, ensure_running

    socket_dir = ensure_running(ROOT / "var" / "pgdata")
    with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE,
                         autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            [name]).fetchone():
            conn.execute(f"CREATE DATABASE {name}")
    os.environ.update({"EMBEDDED_DB_NAME": name, "DEBUG": "0",
                       "SECRET_KEY": "benchmark-only-secret",
                       "CELERY_BROKER_DIR": str(ROOT / "var" / "bench-broker"),
                       "DJANGO_SETTINGS_MODULE": "mfplatform.settings",
                       "API_RATE_LIMIT": "1000000/s"})
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=os.environ.copy(), check=True)
    yield socket_dir


def main() -> None:
    args = parse_args()
    with database(args.database, args.reuse):
        found = existing(args.database) if args.reuse else None
        if found is None:
            tenant, version, key, _data = load(args)
        else:
            tenant, version, key = found
        from mfplatform.serving.service import NORM_HEAD, search_ef

        users = [f"user-{u}" for u in np.random.default_rng(1).choice(args.users, 2000)]
        runs = {}
        for persistent in (False, True):
            port = free_port()
            server = start_server_threads(port, persistent)
            try:
                load_test(port, key, users[:200], 300)  # warm-up: model loads in each worker
                latencies, wall = load_test(port, key, users, args.requests)
            finally:
                server.terminate()
                server.wait(timeout=30)
            ms = np.array(latencies) * 1000
            runs[persistent] = (*np.percentile(ms, [50, 99]), len(latencies) / wall)
            print(f"persistent connections {persistent}: p50 {runs[persistent][0]:.1f} ms, "
                  f"p99 {runs[persistent][1]:.1f} ms, {runs[persistent][2]:.0f} requests/s",
                  flush=True)
        load_average = os.getloadavg()[0]
        p50, p99, rps = runs[False]
        p50_kept, p99_kept, rps_kept = runs[True]
        serving_ef = search_ef(100)
        recalls = {ef: hnsw_recall(tenant, version, ef) for ef in
                   sorted({*RECALL_EF, serving_ef})}
        for ef, (r, rs, q) in recalls.items():
            print(f"ef_search {ef}: recall@100 index {r:.3f}, serving {rs:.3f}, "
                  f"{q:.2f} ms a candidate search", flush=True)
    index_recall, recall, query_ms = recalls[serving_ef]
    recall_rows = "\n".join(f"| {ef} | {r:.3f} | {rs:.3f} | {q:.2f} ms |"
                            for ef, (r, rs, q) in recalls.items())

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    markdown = f"""## Serving: recommendations under load, HNSW recall

`{command_line()}` — {machine_line()}

{args.items:,} catalogue items ({version.n_item_vectors:,} with events, so with vectors),
{args.users:,} users, {args.events:,} synthetic events; ALS 64 factors trained by the pipeline,
item vectors in pgvector 0.6 under the version's HNSW index (m 16, ef_construction 64).
gunicorn 2 workers x 8 threads on loopback; {CONCURRENCY} client threads (keep-alive, on the
same 2 cores), {args.requests:,} requests of `GET /api/v1/recommendations?user=<random known
user>&k=20` with the three default rules that apply to known items plus three tenant rules
(category exclude, max 4 per category, not purchased); every response checked for 20 items.
The machine was shared with other sessions' test runs and benchmarks (1-minute load
average {load_average:.1f} at the end of the load runs), so absolute times are high and drift;
compare the rows.

| measure | as shipped (CONN_MAX_AGE 60 s) | never closed (CONN_MAX_AGE None) | goal |
|---|---|---|---|
| p50 latency | {p50:.1f} ms | {p50_kept:.1f} ms | |
| p99 latency | {p99:.1f} ms | {p99_kept:.1f} ms | <= 25 ms: {met(min(p99, p99_kept) <= 25)} |
| throughput | {rps:,.0f} requests/s | {rps_kept:,.0f} requests/s | >= 300: {
    met(max(rps, rps_kept) >= 300)} |

Recall@100 against exact inner-product search (numpy), 200 sampled users:

| hnsw.ef_search | HNSW index alone | serving (index + norm head) | one serving search |
|---|---|---|---|
{recall_rows}

Serving asks for ef_search {serving_ef} at 100 rows: recall@100 {recall:.3f} (goal >= 0.95:
{met(recall >= 0.95)}); the index alone reaches {index_recall:.3f}. An inner-product HNSW
graph misses the items with the largest vectors (on this model the missed items sit at norm
ranks ~200-800 of 100k; a larger ef_construction, 200, did not help: 0.798 at ef 100; the
MIPS-to-L2 transform with an extra coordinate made it worse, 0.39, because the largest norm is
500x the median). So serving scores the {NORM_HEAD:,} largest item vectors exactly in numpy on
every search (microseconds) and merges them with the index's rows in the same SQL statement.

Latency here is mostly queueing: with 16 requests always in flight, p50 ~ 16 / throughput
(Little's law), so p99 <= 25 ms at concurrency 16 needs well over 640 requests/s.

Where a request's time goes (in-process, one thread, persistent connection, this data): the
whole request ~6.7 ms, of which `recommend()` ~3.6 ms: the candidate search with the item rows
joined ~1.6 ms (the HNSW scan itself ~0.7 ms at ef 80; the join and its planning ~0.5 ms),
the one-round-trip request state (version, user, history, suppressions, rules) ~0.7 ms, rules
and response building ~1 ms; the rest is Django/DRF and the API key path (four `set_config`
round trips for the RLS bypass and the tenant scope, the key lookup through the ORM).
Under gunicorn every request also opens a new Postgres connection (a backend fork) unless
connections persist. What would close the gap: persistent connections (CONN_MAX_AGE, or a
pooler), a per-process cache of verified API keys (a few seconds) and one `set_config` for the
scope, prepared statements for the two serving queries, and a load generator on another machine
(the 16 Python client threads take a share of the 2 cores).
"""
    print(markdown)
    if not args.no_write:
        write_section("serving", markdown)


def post_worker_init(worker) -> None:
    """gunicorn hook: this file is also the server's config file for the run with persistent
    database connections that are never closed (the settings reuse one for 60 s by default)."""
    import os

    from django.db import connections

    if os.environ.get("BENCH_PERSISTENT_CONNECTIONS"):
        connections.settings["default"]["CONN_MAX_AGE"] = None


def start_server_threads(port: int, persistent: bool = False) -> subprocess.Popen:
    import os
    import urllib.request

    env = os.environ.copy()
    config = []
    if persistent:
        env["BENCH_PERSISTENT_CONNECTIONS"] = "1"
        config = ["--config", str(Path(__file__).resolve())]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "2", "--threads", "8", "--worker-class", "gthread",
         *config],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
