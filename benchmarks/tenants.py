"""Many tenants on one deployment (issue #15): storage, traffic and training fairness.

    .venv/bin/python benchmarks/tenants.py [--small-tenants 200] [--versions 1000,3000]
                                           [--parts storage,traffic,queue]

A throwaway database with one large tenant (the serving benchmark's catalogue, trained by the
real pipeline: benchmarks/serving.py `load`) and `--small-tenants` small ones (a few hundred to
a few thousand items each, each trained by the real pipeline), then:

- storage: the vector storage inflated to each count in `--versions` model versions (extra
  retired versions of the small tenants, published by registry.vectors exactly as the pipeline
  publishes), and at 10 versions and each count: planning and execution time of serving's
  candidate query for the large tenant (EXPLAIN ANALYZE; warm on one connection and on new
  connections), and the time to publish one more version's vectors, in pairs taking turns
  with a publication into a reference copy of the database kept at ~10 versions (the ratio
  within a pair compares layouts at one load);
- traffic: one tenant vs uniform vs Zipf-skewed requests over all tenants (requests/s, p50,
  p99, closed loop at 16 connections, model reloads from the serving cache's counters), and
  the web workers' RSS after start and after the load (written to RESULTS.md as a section of
  its own, so that a `--parts traffic` run keeps the storage numbers);
- queue: a small tenant's queue wait (queued -> started) while the large tenant trains, with
  one real worker per training queue.
Develop with small sizes (e.g. `--small-tenants 5 --large-items 5000 --large-users 3000
--large-events 40000 --versions 100 --no-write`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
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
    write_section,
)
from benchmarks.ingest import free_port  # noqa: E402

SMALL_PLAN = {
    "events": {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
    "training": {"strategy": "als", "factors": 32, "iterations": 8, "regularization": 1.0},
    "evaluation": {"k": [10], "max_users": 500},
    "minimums": {"users": 20, "items": 10, "interactions": 200},
    "promotion": {"min_improvement_over_popularity": -1.0, "max_popularity_concentration": 1.0},
}
# The inflated versions: vectors for this many of a small tenant's items (and users), enough
# for a real HNSW graph per partition while 3,000 of them still load in minutes.
INFLATED_ROWS = 300
INFLATED_DIMS = 32
PUBLISHED_ROWS = 2000  # the version whose publication is timed: items and users, 64 dims
# Executions of the prepared candidate query before the measured ones: past the five custom
# plans Postgres makes first under plan_cache_mode=auto (serving's sessions force generic).
PREPARED_WARMUP = 6
SINGLE, PRECOMPUTED = "single tenant (large)", ", precomputed"  # traffic: the base, a suffix


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small-tenants", type=int, default=200)
    parser.add_argument("--large-items", type=int, default=142_000)
    parser.add_argument("--large-users", type=int, default=50_000)
    parser.add_argument("--large-events", type=int, default=600_000)
    parser.add_argument("--versions", default="1000,3000",
                        help="storage sizes to measure at, besides the first 10 versions")
    parser.add_argument("--parts", default="storage,traffic,queue")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3, help="traffic: rounds of the mixes")
    parser.add_argument("--traffic-kinds", default="live,precomputed",
                        help="traffic: live (every list from pgvector) and/or precomputed "
                             "(?precomputed=true, every tenant's lists computed first)")
    parser.add_argument("--chunks", type=int, default=4,
                        help="traffic: slices in which the mixes take turns within a round")
    parser.add_argument("--repeat", type=int, default=20, help="EXPLAIN ANALYZE repetitions")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep-database", action="store_true",
                        help="reuse the tenants of an earlier --keep-database run (same sizes) "
                             "and keep them for the next: build under load, measure when quiet")
    parser.add_argument("--database", default="mfbench_tenants")
    return parser.parse_args()


# ---------------------------------------------------------------- building the tenants


def existing_tenant(slug: str) -> dict | None:
    """A tenant an earlier --keep-database run built, with a new API key; None if absent."""
    from mfplatform.registry.models import ModelVersion
    from tenants.context import tenant_context
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        return None
    with tenant_context(tenant):
        # The active version, else the latest (a rejected one: served by the fallbacks).
        versions = ModelVersion.objects.select_related("plan").order_by("-pk")
        version = versions.filter(status="active").first() or versions.first()
        if version is None:  # an earlier build stopped before its run: train it now
            version = _train_half_built(tenant)
        _key, raw = ApiKey.issue(tenant, ["recommend"])
        return {"tenant": tenant, "version": version, "key": raw, "plan": version.plan,
                "users": version.dataset_version.n_users}


def _train_half_built(tenant):
    from mfplatform.registry.runs import execute_run
    from mfplatform.training.models import TrainingPlan
    from mfplatform.training.services import create_plan, queue_run

    plan = TrainingPlan.objects.first() or create_plan(tenant, "main", SMALL_PLAN)
    return execute_run(queue_run(tenant, plan))


def large_tenant(args):
    from benchmarks import serving
    from tenants.context import tenant_context

    reused = existing_tenant("bench")
    if reused:
        return {**reused, "users": args.large_users, "events": args.large_events}
    serving_args = argparse.Namespace(items=args.large_items, users=args.large_users,
                                      events=args.large_events)
    tenant, version, key, _data = serving.load(serving_args)
    with tenant_context(tenant):
        plan = version.plan
    return {"tenant": tenant, "version": version, "key": key, "users": args.large_users,
            "plan": plan, "events": args.large_events}


def small_tenant(index: int) -> dict:
    from benchmarks.pipeline import load_data
    from mfengine.synthetic import generate
    from mfplatform.registry.runs import execute_run
    from mfplatform.training.services import create_plan, queue_run
    from tenants.context import tenant_context
    from tenants.models import ApiKey, Tenant

    reused = existing_tenant(f"small-{index}")
    if reused:
        return reused
    rng = np.random.default_rng(index)
    n_items = int(rng.integers(300, 3000))
    n_users = 3 * n_items
    tenant = Tenant.objects.create(slug=f"small-{index}", name=f"small {index}")
    data = generate(n_users=n_users, n_items=n_items, n_interactions=12 * n_items,
                    seed=100 + index, start=int(time.time()) - 31 * 86400, days=30)
    with tenant_context(tenant):
        load_data(tenant, data)
        plan = create_plan(tenant, "main", SMALL_PLAN)
        version = execute_run(queue_run(tenant, plan))
        _key, raw = ApiKey.issue(tenant, ["recommend"])
    return {"tenant": tenant, "version": version, "key": raw, "users": n_users, "plan": plan}


def stored_versions() -> int:
    """Model versions with vectors: the item-vector partitions, in their blocks (a catalogue
    count, no RLS)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_partition_tree('registry_itemvector') "
                       "WHERE isleaf")
        return cursor.fetchone()[0]


# A publication's statements by what they do (registry.vectors issues them), for the steps'
# table: the first pattern found in a statement names its step.
STEPS = (("ATTACH PARTITION", "ATTACH PARTITION"), ("DROP CONSTRAINT", "drop the CHECK"),
         ("CREATE TEMP TABLE", "staging table"), ("TRUNCATE", "staging table"),
         ("CREATE TABLE", "CREATE TABLE (LIKE parent, CHECK)"),
         ("pg_policies", "row-level security"), ("ROW LEVEL SECURITY", "row-level security"),
         ("CREATE POLICY", "row-level security"), ("COPY", "COPY into staging"),
         ("INSERT INTO", "INSERT ... SELECT"), ("maintenance", "HNSW index"),
         ("CREATE INDEX", "HNSW index"), ("ANALYZE", "ANALYZE"))


def step_of(statement: str) -> str:
    if "pg_advisory_xact_lock" in statement or "to_regclass" in statement:
        return "finding the block (advisory lock, to_regclass)"
    kind = "user" if "uservector" in statement or "user_vectors" in statement else "item"
    for pattern, step in STEPS:
        if pattern in statement:
            return f"{kind}: {step}" if step != "HNSW index" else "item: HNSW index"
    return "other SQL (the version's row)"


class StepTimes:
    """Seconds per publication step, recorded by a cursor class set on the raw connection
    (registry.vectors runs every statement of a publication through `raw.cursor()`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, statement: str, seconds: float) -> None:
        step = step_of(statement)
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    def cursor_class(self, base):
        """`base` (Django's cursor class on the connection) timing each statement."""
        times = self

        class TimedCursor(base):
            def execute(self, query, *args, **kwargs):
                started = time.perf_counter()
                try:
                    return super().execute(query, *args, **kwargs)
                finally:
                    times.add(str(query), time.perf_counter() - started)

            def copy(self, statement, *args, **kwargs):
                from contextlib import contextmanager

                @contextmanager
                def timed():
                    started = time.perf_counter()
                    with super(TimedCursor, self).copy(statement, *args, **kwargs) as copy:
                        yield copy
                    times.add(str(statement), time.perf_counter() - started)
                return timed()

        return TimedCursor


def publish_extra_version(owner: dict, rows: int, dims: int, seed: int,
                          steps: StepTimes | None = None, drop_after: bool = False) -> float:
    """One more (retired) version of `owner`'s plan with random vectors for `rows` of its
    items and users, published as the pipeline publishes; returns the seconds it took.
    `steps`, when given, receives the seconds of each statement by step, and the commit's.
    `drop_after`: its partitions dropped once timed, as retention would (the database keeps
    its size)."""
    from django.db import connection, transaction

    from mfplatform.catalog.models import EndUser, Item
    from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
    from mfplatform.registry.vectors import create_item_index, drop_vectors, write_vectors
    from mfplatform.training.models import RunStatus, TrainingRun
    from tenants.context import tenant_context

    tenant, template = owner["tenant"], owner["version"]
    rng = np.random.default_rng(seed)
    with tenant_context(tenant):
        items = np.array(Item.objects.order_by("pk").values_list("pk", flat=True)[:rows])
        users = np.array(EndUser.objects.order_by("pk").values_list("pk", flat=True)[:rows])
        last = ModelVersion.objects.filter(plan=owner["plan"]).order_by("-version").first()
        run = TrainingRun.objects.create(
            tenant=tenant, plan=owner["plan"], plan_revision=template.plan_revision,
            dataset_version=template.dataset_version, status=RunStatus.SUCCEEDED,
            cutoff=template.dataset_version.cutoff, trigger="benchmark")
        version = ModelVersion.objects.create(
            tenant=tenant, plan=owner["plan"], plan_revision=template.plan_revision,
            dataset_version=template.dataset_version, training_run=run,
            version=last.version + 1, kind=ModelKind.MF, strategy="als", dimensions=dims,
            status=ModelStatus.RETIRED)
        connection.ensure_connection()
        raw = connection.connection
        default_cursor = raw.cursor_factory
        if steps is not None:
            raw.cursor_factory = steps.cursor_class(default_cursor)
        started = time.perf_counter()
        try:
            with transaction.atomic():
                version.n_item_vectors = write_vectors(
                    version, "item", items, rng.standard_normal((len(items), dims)))
                version.n_user_vectors = write_vectors(
                    version, "user", users, rng.standard_normal((len(users), dims)))
                create_item_index(version)
                version.save(update_fields=["n_item_vectors", "n_user_vectors"])
                committing = time.perf_counter()
            finished = time.perf_counter()
        finally:
            raw.cursor_factory = default_cursor
        if steps is not None:
            steps.seconds["commit"] = steps.seconds.get("commit", 0.0) + finished - committing
        if drop_after:
            with transaction.atomic():
                drop_vectors(version)
        return finished - started


def inflate(smalls: list[dict], target: int) -> None:
    have = stored_versions()
    started = time.perf_counter()
    for n in range(max(0, target - have)):
        publish_extra_version(smalls[n % len(smalls)], INFLATED_ROWS, INFLATED_DIMS,
                              seed=have + n)
    print(f"storage at {stored_versions():,} versions "
          f"({time.perf_counter() - started:.0f} s to add {max(0, target - have):,})",
          flush=True)


# ---------------------------------------------------------------- storage measurements


def candidate_query_times(large: dict, repeat: int) -> dict:
    """Planning and execution of serving's candidate query for the large tenant's active
    version (EXPLAIN ANALYZE), median over `repeat` runs on one warm connection and over
    `repeat // 4 + 1` new connections (each its first statement after setting the scope)."""
    import psycopg
    from django.db import connection
    from pgvector.psycopg import register_vector

    from mfplatform.serving.candidates import candidate_sql

    version = large["version"]
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + candidate_sql(version, 100)
    query = np.random.default_rng(0).standard_normal(version.dimensions).astype(np.float32)
    params = {"query": query, "head": "{}", "scores": "{}"}
    settings = connection.settings_dict

    def connect() -> psycopg.Connection:
        conn = psycopg.connect(host=settings["HOST"], port=settings["PORT"] or None,
                               user=settings["USER"], dbname=settings["NAME"],
                               password=settings["PASSWORD"] or None, autocommit=True,
                               options=settings["OPTIONS"].get("options", ""))
        register_vector(conn)
        conn.execute("SELECT set_config('app.tenant_id', %s, false)",
                     [str(large["tenant"].pk)])
        return conn

    def explain(conn) -> tuple[float, float]:
        plan = conn.execute(sql, params).fetchone()[0][0]
        return plan["Planning Time"], plan["Execution Time"]

    # As serving runs it: a statement prepared once per connection (cursor.execute(...,
    # prepare=True)) in a session that plans it generically from its first execution
    # (plan_cache_mode, settings.DATABASES), so nothing is planned per request. EXPLAIN
    # needs the statement's name, so PREPARE it by hand.
    named = (candidate_sql(version, 100).replace("%(query)s", "$1")
             .replace("%(head)s", "$2").replace("%(scores)s", "$3"))
    literal = "[" + ",".join(map(repr, query.tolist())) + "]"

    def explain_prepared(conn) -> tuple[float, float]:
        plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE candidates("
                            f"'{literal}', '{{}}', '{{}}')").fetchone()[0][0]
        return plan["Planning Time"], plan["Execution Time"]

    with connect() as conn:
        explain(conn)
        warm = [explain(conn) for _ in range(repeat)]
        conn.execute(f"PREPARE candidates AS {named}")
        prepared = [explain_prepared(conn) for _ in range(PREPARED_WARMUP + repeat)]
        parts = planning_by_part(conn, version, literal, repeat)
    cold = []
    for _ in range(repeat // 4 + 1):
        with connect() as conn:
            cold.append(explain(conn))
    return {"plan_prepared": statistics.median(p for p, _ in prepared[PREPARED_WARMUP:]),
            "plan_prepared_first": prepared[0][0],
            "plan_warm": statistics.median(p for p, _ in warm),
            "exec_warm": statistics.median(e for _, e in warm),
            "plan_new": statistics.median(p for p, _ in cold),
            "exec_new": statistics.median(e for _, e in cold), "parts": parts}


def planning_by_part(conn, version, literal: str, repeat: int) -> dict[str, float]:
    """Planning time (ms, median) of serving's statement as text and of it with parts taken
    away, the variants taking turns `repeat` times (a drift of the host falls on all)."""
    from mfplatform.registry.vectors import partition_name
    from mfplatform.serving.candidates import candidate_sql
    from mfplatform.serving.items import ITEM_COLUMNS

    dims = int(version.dimensions)
    vector, table = f"'{literal}'::vector({dims})", partition_name("item", version.pk)
    embedding = f"embedding::vector({dims})"
    columns = ", ".join(f"i.{c}" for c in ITEM_COLUMNS)
    full = (candidate_sql(version, 100).replace("%(query)s", f"'{literal}'")
            .replace("%(head)s", "'{}'").replace("%(scores)s", "'{}'"))
    scan = (f"SELECT item_id, cold_placement, -({embedding} <#> {vector}) AS score FROM "
            f"{table} ORDER BY {embedding} <#> {vector} LIMIT 100")
    idx = f"WITH idx AS MATERIALIZED ({scan}) "
    variants = {
        "serving's statement": full,
        "without the catalogue join": idx + full[full.index(", head AS"):full.index(
            " JOIN catalog_item")].replace(f"SELECT {columns}, h.score, h.indexed, "
                                           f"h.cold_placement", "SELECT h.*") +
        " ORDER BY h.score DESC",
        "without the head CTE and the union": idx + f"SELECT {columns}, h.score FROM idx h "
        f"JOIN catalog_item i ON i.id = h.item_id ORDER BY h.score DESC",
        "the index scan alone": scan,
        "a catalogue row by primary key": "SELECT * FROM catalog_item WHERE id = 1",
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, sql in variants.items():
            plan = conn.execute("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + sql
                                ).fetchone()[0][0]
            times[name].append(plan["Planning Time"])
    return {name: statistics.median(values) for name, values in times.items()}


@contextlib.contextmanager
def on_database(name: str):
    """Django's default connection on database `name` within the block, each time a new
    session (both sides of a pair start alike: catalogue caches cold)."""
    from django.db import connection

    saved = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = saved


def copy_database(socket_dir, source: str, target: str | None) -> None:
    """`target` made a copy of `source` (CREATE DATABASE ... TEMPLATE: no session may be on
    `source`), or, with `source` empty, dropped."""
    import psycopg
    from django.db import connections

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE

    connections.close_all()
    with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE,
                         autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        if source:
            conn.execute(f"CREATE DATABASE {target} TEMPLATE {source}")


def publication_pairs(owner: dict, pairs: int, databases: dict[str, str],
                      seed: int) -> dict:
    """`pairs` publications of one more version's vectors (PUBLISHED_ROWS items and users,
    64 dims: write, index, analyze, attach) into the reference database (~10 versions) and
    into the inflated one, taking turns (the order flipped each pair), the same vectors on
    both sides of a pair; each dropped once timed, so neither database grows. The host's
    load drifts over minutes; within a pair, seconds apart, both sides share it."""
    runs: dict[str, list[tuple[float, dict[str, float]]]] = {"reference": [], "inflated": []}
    for n in range(pairs):
        order = ("reference", "inflated") if n % 2 == 0 else ("inflated", "reference")
        for side in order:
            steps = StepTimes()
            with on_database(databases[side]):
                seconds = publish_extra_version(owner, PUBLISHED_ROWS, 64, seed=seed + n,
                                                steps=steps, drop_after=True)
            steps.seconds["other (Django, Python)"] = seconds - sum(steps.seconds.values())
            runs[side].append((seconds, steps.seconds))
    ratios = [i / r for (i, _), (r, _) in zip(runs["inflated"], runs["reference"],
                                              strict=True)]
    return {"publish": statistics.median(t for t, _ in runs["inflated"]),
            "reference": statistics.median(t for t, _ in runs["reference"]),
            "ratios": ratios, "ratio": statistics.median(ratios), "worst": max(ratios),
            "steps": median_steps([s for _, s in runs["inflated"]]),
            "reference_steps": median_steps([s for _, s in runs["reference"]])}


def median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names}


def storage_row(large: dict, publisher: dict, repeat: int, databases: dict[str, str]) -> dict:
    times = {"uptime": uptime(), "versions": stored_versions()}
    with on_database(databases["reference"]):
        times["reference_versions"] = stored_versions()
    times.update(candidate_query_times(large, repeat))
    times.update(publication_pairs(publisher, max(3, repeat // 4), databases,
                                   seed=10_000 + times["versions"]))
    times["uptime_after"] = uptime()
    print(f"{times['versions']:,} versions: a request pays {times['plan_prepared']:.3f} ms of "
          f"planning (prepared, cached generic plan; first execution "
          f"{times['plan_prepared_first']:.3f} ms); the text planned {times['plan_warm']:.3f} ms "
          f"warm, {times['plan_new']:.2f} ms on a new connection; execution "
          f"{times['exec_warm']:.2f} ms; publication {times['publish']:.2f} s vs "
          f"{times['reference']:.2f} s at {times['reference_versions']:,} versions, pairs "
          + ", ".join(f"{r:.3f}x" for r in times["ratios"])
          + f" ({times['uptime']})", flush=True)
    for name, ms in times["parts"].items():
        print(f"  planning, {name}: {ms:.3f} ms", flush=True)
    for name, seconds in times["steps"].items():
        print(f"  publication, {name}: {1000 * seconds:.1f} ms", flush=True)
    return times


# ---------------------------------------------------------------- traffic and queue


def web_rss_mb(server: subprocess.Popen) -> list[float]:
    """RSS of each gunicorn worker (children of the server process), MB."""
    sizes = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == server.pid:
            sizes.append(int(fields["VmRSS"].split()[0]) / 1024)
    return sorted(sizes)


def scrape(port: int) -> dict[str, float]:
    """The serving cache's counters summed over the workers, and its bytes per worker, from
    GET /metrics (gunicorn's workers share PROMETHEUS_MULTIPROC_DIR)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        if not family.name.startswith("mf_serving_cache"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = ".".join((sample.name, sample.labels.get("kind", ""),
                            sample.labels.get("pid", "")))
            out[key] = out.get(key, 0.0) + sample.value
    return out


def bundle_loads(before: dict, after: dict) -> float:
    return (after.get("mf_serving_cache_misses_total.bundle.", 0.0)
            - before.get("mf_serving_cache_misses_total.bundle.", 0.0))


def traffic(tenants: list[dict], args) -> dict:
    """Each mix against the shipped gunicorn settings (2 workers x 4 threads, the cache budget
    of SERVING_CACHE_BYTES each): a warm-up that asks for every tenant of the mix a few times
    (each worker loads what it serves), then `--requests` measured requests a round; model
    loads during those are the cache's reloads. Within a round the mixes take turns in
    `--chunks` slices, so that a drift of the host's speed (seconds long on these shared
    machines) falls on every mix alike, not on the one measured then."""
    from benchmarks import serving

    rng = np.random.default_rng(5)
    n = args.requests
    ranks = np.arange(1, len(tenants) + 1)
    zipf = (1 / ranks) / (1 / ranks).sum()
    choices = {SINGLE: np.zeros(n, int),
               "uniform over all tenants": rng.integers(len(tenants), size=n),
               "Zipf (s=1) over all tenants": rng.choice(len(tenants), size=n, p=zipf)}
    kinds = args.traffic_kinds.split(",")
    if set(kinds) - {"live", "precomputed"}:  # "".split(",") is [""]: refused here too
        raise SystemExit("--traffic-kinds: live and/or precomputed")
    if "precomputed" in kinds:
        for owner in tenants:
            serving.ensure_precomputed(owner["tenant"], owner["version"])
    # A mix: (the tenant of each request, whether it asks for the precomputed list).
    mixes = {name + PRECOMPUTED * (kind == "precomputed"): (choice, kind == "precomputed")
             for kind in kinds for name, choice in choices.items()}
    port = free_port()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(ROOT / "var" / "bench-prometheus")

    server = serving.start_server(port, "--config", "python:mfplatform.gunicorn_conf")
    results: dict = {"rss_start": web_rss_mb(server), "uptime_before": uptime(),
                     "shared_buffers": shared_buffers()}
    try:
        for choice in choices.values():  # the models each mix reads, whatever the kind
            warm_up(port, tenants, sorted(set(choice.tolist())))
        for round_number in range(1, args.rounds + 1):
            parts: dict[str, list[dict]] = {name: [] for name in mixes}
            for chunk in range(args.chunks):
                for name, (choice, precomputed) in mixes.items():
                    part = np.array_split(choice, args.chunks)[chunk]
                    parts[name].append(traffic_mix(port, tenants, part, rng, precomputed))
            for name, runs in parts.items():
                run = combined(runs)
                print(f"round {round_number}, {name}: p50 {run['p50']:.1f} ms, p99 "
                      f"{run['p99']:.1f} ms, {run['rps']:.0f} requests/s, reloads "
                      f"{100 * run['reloads']:.2f}%, from a list {100 * run['listed']:.1f}% "
                      f"({run['tenants']} tenants)", flush=True)
                results.setdefault(name, []).append(run)
        results["rss"] = web_rss_mb(server)
        results["cache"] = scrape(port)
        results["uptime_after"] = uptime()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def warm_up(port: int, tenants: list[dict], asked: list[int]) -> None:
    """Every tenant asked 8 times, in passes until one loads nothing: under load gunicorn's
    workers do not share connections evenly, and a worker a tenant never reached would load
    it when measured."""
    from benchmarks import serving

    for _ in range(5):
        before = scrape(port)
        keys = [tenants[t]["key"] for t in asked] * 8
        paths = [f"/api/v1/recommendations?user=user-{i % 7}&k=20" for i in range(len(keys))]
        serving.load_test(port, keys, paths, len(paths))
        if bundle_loads(before, scrape(port)) == 0:
            return


def traffic_mix(port: int, tenants: list[dict], choice: np.ndarray, rng,
                precomputed: bool = False) -> dict:
    """One slice of a mix: `choice` names the tenant of each request (random users);
    `precomputed` asks for the users' precomputed lists."""
    from benchmarks import serving

    keys, paths = [], []
    asked = "&precomputed=true" if precomputed else ""
    for t in choice:
        owner = tenants[t]
        keys.append(owner["key"])
        user = int(rng.integers(owner["users"]))
        paths.append(f"/api/v1/recommendations?user=user-{user}&k=20{asked}")
    before = scrape(port)
    answers: list[tuple[str, bool]] = []
    latencies, wall = serving.load_test(port, keys, paths, choice.size, answers=answers)
    return {"latencies": latencies, "wall": wall, "loads": bundle_loads(before, scrape(port)),
            "tenants": set(choice.tolist()),
            "listed": sum(bool(listed) for _path, listed in answers)}


def combined(parts: list[dict]) -> dict:
    """A round of a mix from its slices: requests over the slices' summed wall time."""
    ms = np.concatenate([np.asarray(p["latencies"]) for p in parts]) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "rps": ms.size / sum(p["wall"] for p in parts),
            "reloads": sum(p["loads"] for p in parts) / ms.size,
            "listed": sum(p["listed"] for p in parts) / ms.size,
            "tenants": len(set().union(*(p["tenants"] for p in parts)))}


def shared_buffers() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_buffers")
        return cursor.fetchone()[0]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def queue_wait(large: dict, small: dict) -> dict:
    """The large tenant's run and then a small tenant's, each worker on its own queue (as
    `manage.py serve` runs them); the small run's wait from queued to started."""
    from mfplatform.training.models import RunStatus, TrainingRun
    from mfplatform.training.queues import LARGE_QUEUE, SMALL_QUEUE, WORKER_QUEUES
    from mfplatform.training.services import queue_run
    from tenants.context import tenant_context

    def status(run):
        with tenant_context(run.tenant_id):
            return TrainingRun.objects.values_list("status", "started_at").get(pk=run.pk)

    def wait(predicate, timeout=600):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit("queue benchmark: timed out")
            time.sleep(0.05)

    from django.conf import settings

    # The large tenant trains on the large-tenant queue whatever the sizes chosen here: in this
    # process (which sends its run) and in the workers (which send its precompute after the
    # promotion; with the default threshold they would route it to the small tenants' queue).
    threshold = min(settings.TRAINING_LARGE_TENANT_EVENTS, large["events"])
    settings.TRAINING_LARGE_TENANT_EVENTS = threshold
    os.environ["TRAINING_LARGE_TENANT_EVENTS"] = str(threshold)
    from mfplatform.celery import app

    # Tasks the set-up left queued (the in-process runs' precomputes) are not part of this
    # measurement: a small tenant's run queued while a large one trains.
    print(f"purged {app.control.purge()} queued set-up tasks", flush=True)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mfplatform", "worker", "--loglevel", "WARNING",
         "--concurrency", "1", "--pool", "solo", "--queues", ",".join(queues),
         "--hostname", f"bench-{size}@%h"], cwd=ROOT, env=os.environ.copy())
        for size, queues in WORKER_QUEUES.items()]
    try:
        # Both workers up and consuming first: a worker's boot (imports, Django) takes seconds,
        # and the small run must not wait for that instead of for a free worker.
        from mfplatform.ops.models import WorkerPing
        from mfplatform.ops.tasks import ping

        tokens = {f"bench-ready-{queue}" for queue in (SMALL_QUEUE, LARGE_QUEUE)}
        WorkerPing.objects.filter(token__in=tokens).delete()
        for token in tokens:
            ping.apply_async(args=[token], queue=token.removeprefix("bench-ready-"))
        wait(lambda: WorkerPing.objects.filter(token__in=tokens).count() == len(tokens))
        with tenant_context(large["tenant"]):
            large_run = queue_run(large["tenant"], large["plan"], trigger="benchmark")
        wait(lambda: status(large_run)[0] == RunStatus.TRAINING)
        with tenant_context(small["tenant"]):
            small_run = queue_run(small["tenant"], small["plan"], trigger="benchmark")
        queued = time.monotonic()
        wait(lambda: status(small_run)[0] != RunStatus.QUEUED)
        started = time.monotonic() - queued
        wait(lambda: status(small_run)[0] in (RunStatus.SUCCEEDED, RunStatus.FAILED))
        finished = time.monotonic() - queued
        large_state = status(large_run)[0]
        wait(lambda: status(large_run)[0] in (RunStatus.SUCCEEDED, RunStatus.FAILED))
        large_total = time.monotonic() - queued
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a warm shutdown waits for its task to end
                worker.kill()
                worker.wait()
    print(f"small run started {started:.2f} s after queueing, finished after {finished:.1f} s "
          f"(large run then {large_state}, finished after {large_total:.0f} s)", flush=True)
    return {"started": started, "finished": finished, "large_state": large_state,
            "large_total": large_total}


# ---------------------------------------------------------------- report


def report(args, storage: list[dict], load: float) -> str:
    lines = [f"## Many tenants on one deployment\n\n`{command_line()}` — {machine_line()}\n",
             f"1 large tenant ({args.large_items:,} items, {args.large_users:,} users, "
             f"{args.large_events:,} events, ALS 64 factors) and {args.small_tenants} small "
             f"ones (300-3,000 items, 3 users an item, 12 events an item, ALS 32 factors), "
             f"all trained by the pipeline. 1-minute load average at the end: {load:.1f}.\n"]
    if storage:
        lines += storage_report(args, storage)
    return "\n".join(lines)


def queue_report(args, queue: dict) -> str:
    return "\n".join([
        "### Training fairness: a small tenant's run while a large one trains\n",
        f"`{command_line()}` — {machine_line()}; `uptime` at the end: "
        f"`{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}`\n",
        f"A worker per training queue (`training_small` with Celery's default queue, "
        f"`training_large`), both consuming before anything is queued; the set-up's queued "
        f"tasks purged. The large tenant ({args.large_events:,} events) is queued; once its "
        f"run is training, a small tenant's run is queued. The small run started "
        f"{queue['started']:.2f} s after it was queued and finished after "
        f"{queue['finished']:.1f} s; the large run was then {queue['large_state']} and "
        f"finished after {queue['large_total']:.0f} s. Goal: start within 5 s "
        f"({'met' if queue['started'] <= 5 else 'NOT met'}).\n"])


# Measured by hand before the pairs (kept: why the partitions live in blocks).
ATTACH_HISTORY = ("The HNSW build is 80-90% of a publication. ATTACH is the step that grew "
                  "with versions before the blocks (one flat parent: 37 ms at 15 partitions, "
                  "116 ms at 3,005 on a scratch table, load 11; in blocks of 100: 30 / 44 ms; "
                  "measured by hand).\n")


def storage_report(args, storage: list[dict]) -> list[str]:
    base, last = storage[0], storage[-1]
    pairs = len(last["ratios"])
    sizes = " / ".join(f"{row['versions']:,}" for row in storage)
    lines = ["### Vector storage (a partition per model version, in blocks of 100 ids)\n",
             f"Storage inflated with retired versions of the small tenants ({INFLATED_ROWS} "
             f"items and users, {INFLATED_DIMS} dims each, published by `registry.vectors` as "
             f"the pipeline publishes). The candidate query is serving's (`candidate_sql`, 100 "
             f"rows) for the large tenant's active version, EXPLAIN ANALYZE on one warm "
             f"connection. **What a request pays** is the planning of the prepared statement: "
             f"serving prepares it once per session (`prepare=True`) in sessions with "
             f"`plan_cache_mode=force_generic_plan`, so a request runs the cached generic plan "
             f"(EXPLAIN ANALYZE EXECUTE after {PREPARED_WARMUP} executions, median of "
             f"{args.repeat}: revalidating the plan and reading the parameters). The session's "
             f"first execution builds that plan; the text planned on every run (unprepared, "
             f"median of {args.repeat}) and on new connections (median of "
             f"{args.repeat // 4 + 1}) is what the statement costs to plan, paid once per "
             f"session and statement. **Publication**: one more version's vectors "
             f"({PUBLISHED_ROWS:,} items and users, 64 dims; write, HNSW index, ANALYZE, "
             f"attach), {pairs} pairs at each size taking turns (order flipped each pair, "
             f"the same vectors on both sides, each side on a new session): one into a "
             f"reference database, a `CREATE DATABASE ... TEMPLATE` copy of this one made at "
             f"the first row and kept at its size, and one into this database; each "
             f"publication's partitions dropped once timed, as retention would. The load "
             f"drifts over minutes on this shared machine, so only the ratio within a pair "
             f"(seconds apart) compares layouts; the first row's pairs (both sides at the same "
             f"size) show the noise.\n",
             "| versions stored | a request pays: planning, prepared (cached generic plan) | "
             "first execution (plan built) | text planned, warm | text planned, new "
             "connection | execution warm | publication (median) | reference publication, "
             "same pairs (median; versions) | ratio per pair | median ratio | worst ratio | "
             "`uptime` before / after the row |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in storage:
        loads = " / ".join(row[key].split("load average:")[-1].strip()
                           for key in ("uptime", "uptime_after"))
        lines.append(f"| {row['versions']:,} | {row['plan_prepared']:.3f} ms | "
                     f"{row['plan_prepared_first']:.2f} ms | {row['plan_warm']:.3f} ms | "
                     f"{row['plan_new']:.2f} ms | {row['exec_warm']:.2f} ms | "
                     f"{row['publish']:.2f} s | {row['reference']:.2f} s "
                     f"({row['reference_versions']:,}) | "
                     + ", ".join(f"{r:.3f}" for r in row["ratios"])
                     + f" | {row['ratio']:.3f}x | {row['worst']:.3f}x | {loads} |")
    lines.append(f"\nGoals at the largest size: what a request pays for planning <= 0.2 ms "
                 f"warm ({_met(last['plan_prepared'] <= 0.2)}; the text planned each time: "
                 f"{_met(last['plan_warm'] <= 0.2)}), <= 5 ms on a new connection "
                 f"({_met(last['plan_new'] <= 5)}); publication at {last['versions']:,} "
                 f"versions <= 1.2x at {last['reference_versions']:,}: on the median of the "
                 f"pairs {_met(last['ratio'] <= 1.2)} ({last['ratio']:.3f}x), in every pair "
                 f"{_met(last['worst'] <= 1.2)} (worst {last['worst']:.3f}x).\n")
    lines.append(ATTACH_HISTORY)
    lines += [f"Planning the text, by part (ms, medians of {args.repeat} taking turns; "
              f"sizes {sizes}):\n", "| statement | " + " | ".join(
                  f"{row['versions']:,}" for row in storage) + " |",
              "|---|" + "---|" * len(storage)]
    for name in base["parts"]:
        lines.append(f"| {name} | " + " | ".join(f"{row['parts'][name]:.3f}"
                                                 for row in storage) + " |")
    lines += ["", f"Publication by step (ms, medians of the {pairs} pairs; statements timed "
              f"on the client, each with its round trip; the reference side of the pairs at "
              f"{last['versions']:,}):\n",
              "| step | " + " | ".join(f"{row['versions']:,}" for row in storage)
              + f" | reference ({last['reference_versions']:,}) | at {last['versions']:,} / "
              f"reference |", "|---|" + "---|" * (len(storage) + 2)]
    for name in last["reference_steps"]:
        first, final = last["reference_steps"][name], last["steps"].get(name, 0.0)
        ratio = f"{final / first:.2f}x" if first > 0 else ""
        lines.append(f"| {name} | " + " | ".join(
            f"{1000 * row['steps'].get(name, 0.0):.1f}" for row in storage)
            + f" | {1000 * first:.1f} | {ratio} |")
    return lines + [""]


def traffic_report(args, result: dict) -> str:
    """The traffic part, a section of its own in RESULTS.md (below the storage part)."""
    from django.conf import settings

    budget = settings.SERVING_CACHE_BYTES / 2**20
    mixes = [name for name, runs in result.items()
             if isinstance(runs, list) and isinstance(runs[0], dict)]  # not the RSS lists
    lines = ["### Traffic: one tenant vs all tenants (closed loop, 16 connections)\n",
             f"`{command_line()}` — {machine_line()}\n",
             f"1 large tenant ({args.large_items:,} items, {args.large_users:,} users, "
             f"{args.large_events:,} events, ALS 64 factors) and {args.small_tenants} small ones "
             f"(300-3,000 items, ALS 32 factors), all trained by the pipeline. The shipped "
             f"gunicorn settings (2 workers x 4 threads), serving cache "
             f"{budget:,.0f} MiB a worker (SERVING_CACHE_BYTES), "
             f"{settings.SERVING_PREPARED_STATEMENTS} prepared statements a database session, "
             f"Postgres shared_buffers {result.get('shared_buffers', '?')}. Each mix: a warm-up "
             f"asking every tenant of the mix 8 times until a pass loads no model (once), then "
             f"{args.requests:,} requests a round (random users, k=20), the {len(mixes)} "
             f"mixes taking turns in {args.chunks} slices within each of {args.rounds} rounds "
             f"(a drift of the host's speed falls on all of them); a goal is met when it "
             f"holds in every round; a reload is a bundle load during those "
             f"(mf_serving_cache_misses_total). "
             f"A precomputed mix asks `precomputed=true` of the same tenants and users, every "
             f"tenant's lists (top 100) computed before; it is compared with the single "
             f"tenant's precomputed mix; \"from a list\" is the share of its responses "
             f"served from one (the response's `precomputed`). "
             f"The machine is shared with other sessions' work: `uptime` before: "
             f"`{result['uptime_before']}`; after: `{result['uptime_after']}`.\n",
             "| traffic | round | tenants asked | requests/s | p50 | p99 | reloads | from a list | "
             "requests/s vs single (same round) | p99 vs single (same round) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for name in mixes:
        runs = result[name]
        single = result[SINGLE + PRECOMPUTED * name.endswith(PRECOMPUTED)]
        verdicts = []
        for number, (run, base) in enumerate(zip(runs, single, strict=True), start=1):
            rps_ratio, p99_ratio = run["rps"] / base["rps"], run["p99"] / base["p99"]
            lines.append(f"| {name} | {number} | {run['tenants']} | {run['rps']:.0f} | "
                         f"{run['p50']:.1f} ms | {run['p99']:.1f} ms | "
                         f"{100 * run['reloads']:.2f}% | {100 * run['listed']:.1f}% | "
                         f"{rps_ratio:.2f}x | {p99_ratio:.2f}x |")
            verdicts.append((rps_ratio >= 0.9, p99_ratio <= 1.25, run["reloads"] < 0.01))
        if runs is not single:
            throughput, p99, reloads = (all(v[i] for v in verdicts) for i in range(3))
            goals.append(f"{name}: throughput >= 0.9x ({_met(throughput)}), p99 <= 1.25x "
                         f"({_met(p99)}), reloads < 1% ({_met(reloads)})")
    cache = result["cache"]
    per_worker: dict[str, float] = {}
    for key, value in cache.items():
        if key.startswith("mf_serving_cache_bytes."):
            pid = key.rsplit(".", 1)[1]
            per_worker[pid] = per_worker.get(pid, 0.0) + value
    held = [v / 2**20 for v in per_worker.values()]
    lines += ["", "Goals (issue #15), every round: " + "; ".join(goals) + ".\n",
              "Web workers' RSS after start: "
              + ", ".join(f"{mb:.0f} MB" for mb in result["rss_start"])
              + "; after the load: " + ", ".join(f"{mb:.0f} MB" for mb in result["rss"])
              + "; serving cache held: " + ", ".join(f"{mb:.1f} MiB" for mb in held)
              + f" (budget {budget:,.0f} MiB each; evictions "
              f"{cache.get('mf_serving_cache_evictions_total.bundle.', 0):.0f}). RSS within "
              f"the budget plus the base after start: "
              f"{_met(max(result['rss']) <= max(result['rss_start']) + budget)}.\n"]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    args = parse_args()
    parts = set(args.parts.split(","))
    targets = [int(v) for v in args.versions.split(",") if v]
    with bench_database(args.database, keep=args.keep_database) as socket_dir:
        import django

        django.setup()
        large = large_tenant(args)
        smalls = [small_tenant(i) for i in range(min(9, args.small_tenants))]
        storage = []
        databases = {"inflated": args.database, "reference": f"{args.database}_reference"}
        try:
            if "storage" in parts:
                copy_database(socket_dir, args.database, databases["reference"])
                storage.append(storage_row(large, smalls[0], args.repeat, databases))
            smalls += [small_tenant(i) for i in range(len(smalls), args.small_tenants)]
            print(f"{len(smalls)} small tenants trained", flush=True)
            if "storage" in parts:
                for target in targets:
                    inflate(smalls, target)
                    storage.append(storage_row(large, smalls[0], args.repeat, databases))
        finally:
            if "storage" in parts:
                copy_database(socket_dir, "", databases["reference"])
        traffic_result = traffic([large, *smalls], args) if "traffic" in parts else None
        queue = queue_wait(large, smalls[-1]) if "queue" in parts else None
        load = os.getloadavg()[0]
        traffic_markdown = traffic_report(args, traffic_result) if traffic_result else ""
    markdown = report(args, storage, load) if storage else ""
    queue_markdown = queue_report(args, queue) if queue else ""
    print(markdown + "\n" + traffic_markdown + "\n" + queue_markdown)
    if not args.no_write:
        if markdown:
            write_section("tenants", markdown)
        if queue_markdown:
            write_section("tenants-queue", queue_markdown)
        if traffic_markdown:
            write_section("tenants-traffic", traffic_markdown)


if __name__ == "__main__":
    main()
