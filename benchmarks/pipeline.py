"""Time from "train" to a published candidate for 1M synthetic interactions (or more).

    .venv/bin/python benchmarks/pipeline.py [--users 100000 --items 20000 --events 1000000]

Issue #20's size, on a quiet machine (about 25 minutes with loading and the in-process
reference fits): --users 750000 --items 100000 --events 10000000

Runs against a throwaway database `mfbench` on the embedded server (created, migrated and
dropped by this script), with a real Celery worker process (solo pool, filesystem broker).
Measures each stage as the run records it (dataset build, fit, evaluation, publication with
the HNSW index), the end-to-end time from queueing to a published candidate, and the worker's
peak resident memory (VmHWM): by the end of the dataset build (sampled when the run leaves that
stage, against the idle worker's resident memory) and over the whole run. The worker consumes
every training queue (a run of this size goes to `training_large`). The training stage is
compared with the same fits run in this process (no thread pinning in either: the worker runs
as in production). Loading the data is setup, not measured.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, command_line, machine_line, write_section  # noqa: E402

BENCH_DB = "mfbench"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--in-process", action="store_true",
                        help="run the task in this process instead of a worker (diagnosis)")
    return parser.parse_args()


def create_database(name: str = BENCH_DB) -> None:
    import psycopg

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE, ensure_running

    socket_dir = ensure_running(ROOT / "var" / "pgdata")
    with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE,
                         autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def drop_database(name: str = BENCH_DB) -> None:
    import psycopg

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE, ensure_running

    socket_dir = ensure_running(ROOT / "var" / "pgdata")
    with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE,
                         autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    """COPY into a temp staging table, then INSERT ... SELECT (row-level security forbids COPY
    into the table itself)."""
    cursor.execute(f"CREATE TEMP TABLE stage ON COMMIT DROP AS "
                   f"SELECT {', '.join(columns)} FROM {table} WITH NO DATA")
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(row) + "\n")
    with cursor.copy(f"COPY stage ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(buffer.getvalue())
    cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) "
                   f"SELECT {', '.join(columns)} FROM stage")
    cursor.execute("DROP TABLE stage")


def load_data(tenant, data) -> None:
    from django.db import connection, transaction

    from mfplatform.catalog.models import EventType
    from tenants.context import apply_scope

    types = {name: EventType.objects.create(tenant=tenant, name=name).pk
             for name in sorted(set(data.event_types.tolist()))}
    t = str(tenant.pk)
    with transaction.atomic(), connection.cursor() as cursor:
        apply_scope(connection)  # the raw cursor below bypasses Django's statement hooks
        raw = cursor.cursor
        copy_rows(raw, "catalog_item", ["tenant_id", "external_id", "title", "category", "tags",
                                        "attributes", "is_available", "is_placeholder",
                                        "created_at", "updated_at"],
                  ((t, f"item-{i}", str(data.item_titles[i]), str(data.item_categories[i]),
                    "{" + ",".join(data.item_tags[i]) + "}", "{}", "t", "f", "now", "now")
                   for i in range(data.n_items)))
        copy_rows(raw, "catalog_enduser", ["tenant_id", "external_id", "consent", "is_internal",
                                           "is_bot", "created_at", "updated_at"],
                  ((t, f"user-{u}", "t", "f", "f", "now", "now")
                   for u in range(data.n_users)))
        raw.execute("SELECT external_id, id FROM catalog_item")
        items = dict(raw.fetchall())
        raw.execute("SELECT external_id, id FROM catalog_enduser")
        users = dict(raw.fetchall())
        item_pk = [str(items[f"item-{i}"]) for i in range(data.n_items)]
        user_pk = [str(users[f"user-{u}"]) for u in range(data.n_users)]
        type_pk = {name: str(pk) for name, pk in types.items()}
        copy_rows(raw, "catalog_event", ["tenant_id", "user_id", "item_id", "event_type_id",
                                         "value", "timestamp", "received_at"],
                  ((t, user_pk[u], item_pk[i], type_pk[e], "1", f"{ts}", "now")
                   for u, i, e, ts in zip(data.user_ids.tolist(), data.item_ids.tolist(),
                                          data.event_types.tolist(),
                                          _iso(data.timestamps), strict=True)))


def _iso(timestamps):
    from datetime import UTC, datetime

    return (datetime.fromtimestamp(ts, tz=UTC).isoformat() for ts in timestamps.tolist())


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_training(run) -> float:
    """Seconds for the training stage's work (the evaluation split, the fit on its train part,
    the full-data fit warm-started from it) done in this process, in the caller's environment:
    the reference the worker's training stage is compared against (same data, same library
    calls)."""
    import mfengine
    from mfplatform.training.dataset import build_dataset_version
    from mfplatform.training.pipeline import REFIT_ITERATIONS, _split

    _, events, prepared = build_dataset_version(run.tenant, run.plan_revision, run.cutoff)
    training = dict(run.plan_revision.config["training"])
    strategy = training.pop("strategy")
    mfengine.create(strategy, **{**training, "iterations": 1}).fit(prepared.matrix)  # JIT
    started = time.perf_counter()
    train, _ = _split(run, events, prepared)
    del events
    first = mfengine.create(strategy, **training).fit(train)
    mfengine.create(strategy, **{**training, "iterations": REFIT_ITERATIONS}).fit(
        prepared.matrix, initial_item_factors=first.item_factors_,
        initial_user_factors=first.user_factors_)
    return time.perf_counter() - started


def size_label(events: int) -> str:
    """10000000 -> "10M", 2500000 -> "2.5M": the RESULTS subsection of a run size."""
    return f"{events / 1e6:g}M" if events >= 1_000_000 else f"{events / 1e3:g}k"


def wait_for_timings(run_pk: int, stage: str, timeout: float = 60.0):
    """The run once `stage`'s time is recorded: the stage's timer saves it right after the
    commit that makes the run succeeded, so a poller can see the status first."""
    from mfplatform.training.models import TrainingRun

    deadline = time.monotonic() + timeout
    run = TrainingRun.objects.get(pk=run_pk)
    while stage not in run.timings and time.monotonic() < deadline:
        time.sleep(0.1)
        run = TrainingRun.objects.get(pk=run_pk)
    return run


def goal(events: int, seconds: float, peak_mb: float) -> str:
    """The goal this size is measured against: 1M events under 90 s end to end (the pipeline's
    first goal); from 10M on issue #20's, under 5 minutes with the worker under 4 GB."""
    if events < 10_000_000:
        return (f"Goal (the pipeline's first, set at 1M events): under 90 s end to end: "
                f"{'met' if seconds < 90 else 'NOT met'}.")
    met = seconds < 300 and peak_mb < 4096
    return (f"Goal at 10M events (issue #20): under 300 s end to end with the worker's peak "
            f"under 4 GB: {'met' if met else 'NOT met'}.")


def main() -> None:
    args = parse_args()
    create_database()
    # No precomputed lists after the promotion: that task is serving's, not the pipeline's,
    # and kept the worker busy past the run (a 10M run's worker did not stop within 30 s).
    env = {**os.environ, "EMBEDDED_DB_NAME": BENCH_DB, "DEBUG": "1", "SERVING_PRECOMPUTE": "0",
           "CELERY_BROKER_DIR": str(ROOT / "var" / "bench-broker" / BENCH_DB),
           "DJANGO_SETTINGS_MODULE": "mfplatform.settings"}
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from mfengine.synthetic import generate
    from mfplatform.training.models import RunStatus, TrainingRun
    from mfplatform.training.services import create_plan, queue_run
    from tenants.context import tenant_context
    from tenants.models import Tenant

    worker = None
    try:
        tenant = Tenant.objects.create(slug="bench", name="bench")
        started = time.perf_counter()
        data = generate(n_users=args.users, n_items=args.items, n_interactions=args.events,
                        seed=0, start=int(time.time()) - 61 * 86400, days=60)
        with tenant_context(tenant):
            load_data(tenant, data)
            plan = create_plan(tenant, "bench", {
                "events": {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
                "training": {"strategy": "als", "factors": 64, "iterations": 15},
                "evaluation": {"k": [10, 20, 50]},
                # This measures the pipeline's time and memory, not the gate: as in the
                # serving and tenants benchmarks, the gate's quality bars are off so that
                # the run ends with a published, servable version (the report still holds
                # every metric and check; a failed quality check still rejects).
                "promotion": {"min_improvement_over_popularity": -1.0,
                              "max_popularity_concentration": 1.0}})
        print(f"loaded {args.events:,} events in {time.perf_counter() - started:.1f} s",
              flush=True)
        worker = None if args.in_process else subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mfplatform", "worker", "--pool", "solo",
             "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
             "--without-mingle", "--queues", "training_large,training_small,celery"],
            cwd=ROOT, env=env)
        time.sleep(3)  # let the worker start (and load numba's cache) before the clock does
        with tenant_context(tenant):
            idle = peak_rss_mb(worker.pid, "VmRSS") if worker is not None else float("nan")
            load_start = " / ".join(f"{v:.2f}" for v in os.getloadavg())  # 1/5/15 min
            clock = time.perf_counter()
            run = queue_run(tenant, plan, trigger="command")
            if args.in_process:
                from mfplatform.registry.runs import execute_run

                execute_run(run)
            build_peak = float("nan")
            while True:
                run = TrainingRun.objects.get(pk=run.pk)
                if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                    break
                if worker is not None and build_peak != build_peak and run.status not in (
                        RunStatus.QUEUED, RunStatus.BUILDING_DATASET):
                    build_peak = peak_rss_mb(worker.pid)  # the peak up to the build's end
                time.sleep(0.1)
            total = time.perf_counter() - clock
        if run.status != RunStatus.SUCCEEDED:
            raise SystemExit(f"run failed: {run.error}")
        with tenant_context(tenant):
            run = wait_for_timings(run.pk, "publishing")
        peak = peak_rss_mb(worker.pid if worker is not None else os.getpid())
        with tenant_context(tenant):
            version = run.model_version
            dataset = run.dataset_version
            reference = in_process_training(run)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:  # busy in a task: the results matter more
                worker.kill()
                worker.wait()
        from django.db import connections

        connections.close_all()
        drop_database()

    stages = ["building_dataset", "training", "evaluating", "publishing"]
    full_fit = (version.report or {}).get("engine", {}).get("full_fit", {})
    labels = {"building_dataset": "dataset build (read events, filters, prepare, artifact)",
              "training": f"fit (ALS, 64 factors: 15 iterations on the split's train part for "
                          f"evaluation, then {full_fit.get('iterations', '?')} on the full "
                          f"data{' warm-started from it' if full_fit.get('warm_start') else ''})",
              "evaluating": "evaluation (metrics at K 10/20/50 for <= 5k users, popularity "
                            "and content baselines, quality checks)",
              "publishing": "publication (COPY item+user vectors, HNSW index)"}
    rows = "\n".join(f"| {labels[s]} | {run.timings.get(s, float('nan')):.1f} |" for s in stages)
    largest = max(stages, key=lambda s: run.timings.get(s, 0))
    stage = run.timings.get("training", float("nan"))
    build = run.timings.get("building_dataset", float("nan"))
    millions = args.events / 1e6
    heading = f"{size_label(args.events)} interactions ({args.users:,} users, {args.items:,} items)"
    markdown = f"""### {heading}

`{command_line()}` — {machine_line()}; load average when the run was queued {load_start}

{args.events:,} synthetic interactions, {args.users:,} users, {args.items:,} items; dataset
version: {dataset.n_users:,} users x {dataset.n_items:,} items, {dataset.n_interactions:,}
non-zeros; model version {version.version} ({version.status}: {"; ".join(
    version.decision.get("reasons", []))}), {version.n_item_vectors:,} item
and {version.n_user_vectors:,} user vectors of {version.dimensions} dims.

| stage | seconds |
|---|---|
{rows}
| **end to end (queued -> candidate published, incl. worker pickup)** | **{total:.1f}** |

Training stage in the worker {stage:.1f} s vs the same fits in this process {reference:.1f} s
(ratio {stage / reference:.2f}; goal <= 1.2).

Dataset build: {build:.1f} s, {build / millions:.1f} s per million events. Worker peak
memory (VmHWM) by the end of the build: {build_peak:,.0f} MB ({build_peak / millions:,.0f} MB per
million events; sampled every 0.1 s when the run leaves the build stage); the idle worker
held {idle:,.0f} MB before the run, so the build added {build_peak - idle:,.0f} MB.

Worker peak memory (VmHWM) over the whole run: {peak:,.0f} MB. {goal(args.events, total, peak)}
Largest stage: {largest}
({"fit is the largest, as intended" if largest == "training" else
   "fit is not the largest stage: see the note below"}).
"""
    print(markdown)
    if not args.no_write:
        # Only this size's subsection: the other sizes and the notes of the section stay.
        write_section(f"pipeline-{size_label(args.events)}", markdown, parent="pipeline")


if __name__ == "__main__":
    main()
