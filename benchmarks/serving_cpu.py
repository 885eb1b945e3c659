"""CPU a recommendation request costs the web process, measured in one process (issues #19, #15).

    .venv/bin/python benchmarks/serving_cpu.py [--database mfbench_serving] [--requests 2000]
        [--mixes single,uniform] [--logging on,off] [--threads 1] [--profile single:on]
    .venv/bin/python benchmarks/serving_cpu.py --database mfbench_online --tenant online \
        --mixes online --k 10 [--experiment]

Drives GET /api/v1/recommendations through the WSGI application (every middleware, DRF,
serving, impression logging with its writer thread) against a kept benchmark database and
reports CPU per request: this process's (`time.process_time`, all its threads), the impression
writer thread's share of it, and the Postgres backends this process opened. CPU rather than
wall time, so that other work on the shared machine matters less; no HTTP server or load
generator, so what is left is the web process's own work.

The database is one `benchmarks/serving.py --reuse` kept (mfbench_serving: one large tenant)
or `benchmarks/tenants.py --keep-database` kept (mfbench_tenants_kept: a large tenant and many
small ones): every tenant of it with an active version is asked. Mixes: `single` (the large
tenant, the serving benchmark's users: one in five has events newer than the model),
`precomputed` (the same requests with `precomputed=true`: the lists computed after the
promotion, the live path for users with newer events; serving.py computes the lists when the
database has none), `uniform` (a tenant drawn uniformly for each request, a random user of
it), `online` (online.py's throughput mix: every user of the tenant in turn; its database is
one `online.py --keep-database` kept, whose experiment runs with `--experiment` and is
stopped without). Impression logging is switched in-process (settings.IMPRESSION_LOGGING);
on and off take turns in slices, the order flipped each slice, so that a drift of the host's
speed falls on both. Prints only.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, cpu_of, machine_line, proc_stats  # noqa: E402

# This process's Postgres sessions (PGAPPNAME), to count their CPU (two runs side by side
# count their own).
APP_NAME = f"serving_cpu-{os.getpid()}"


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="mfbench_serving")
    parser.add_argument("--requests", type=int, default=2000,
                        help="measured requests per mix and logging setting")
    parser.add_argument("--mixes", default="single,uniform")
    parser.add_argument("--logging", default="on,off")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--flush-rows", type=int, default=75,
                        help="rows per impression write: a worker of the serving benchmark "
                             "serves ~75 requests in the writer's 1 s")
    parser.add_argument("--threads", type=int, default=1,
                        help="request threads (gunicorn's worker runs 4)")
    parser.add_argument("--profile", default="",
                        help="mix:logging pairs to profile (cProfile, the calling thread), e.g. "
                             "single:on,single:off; the stats go to "
                             "/tmp/serving_cpu-<mix>-<logging>.prof")
    parser.add_argument("--tenant", default="bench",
                        help="the large tenant (online.py's database: online)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--experiment", action="store_true",
                        help="online mix: serve with the tenant's experiment running (as "
                             "online.py's A/B part) rather than stopped (its throughput part)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    return parser.parse_args()


def environment(database: str) -> None:
    metrics_dir = tempfile.mkdtemp(prefix="serving_cpu-prom-")
    os.environ.update({
        "EMBEDDED_DB_NAME": database, "DEBUG": "0", "SECRET_KEY": "benchmark-only-secret",
        "CELERY_BROKER_DIR": str(ROOT / "var" / "bench-broker"),
        "DJANGO_SETTINGS_MODULE": "mfplatform.settings", "API_RATE_LIMIT": "1000000/s",
        "PGAPPNAME": APP_NAME,
        # As under gunicorn (gunicorn_conf.py): metrics in multiprocess files.
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir})


def tenants_to_ask(large: str) -> list[dict]:
    """Every tenant with an active version trained on users, a new key each; the large one
    first."""
    from mfplatform.registry.models import ModelVersion
    from tenants.context import tenant_context
    from tenants.models import ApiKey, Tenant

    out = []
    for tenant in Tenant.objects.order_by("pk"):
        with tenant_context(tenant):
            version = (ModelVersion.objects.filter(status="active")
                       .select_related("dataset_version").first())
            if version is None or not version.dataset_version.n_users:
                continue
            _key, raw = ApiKey.issue(tenant, ["recommend"], name="serving_cpu")
        out.append({"slug": tenant.slug, "key": raw, "users": version.dataset_version.n_users})
    out.sort(key=lambda t: t["slug"] != large)
    if not out or out[0]["slug"] != large:
        raise SystemExit(f"no active version of the large tenant {large!r} in this database: "
                         "build it with benchmarks/serving.py --reuse (or tenants.py "
                         "--keep-database, online.py --keep-database) first")
    return out


def user_ids(slug: str) -> list[str]:
    """The tenant's users as online.py sorts them (its throughput asks them in turn)."""
    from mfplatform.catalog.models import EndUser
    from tenants.context import tenant_context
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug=slug)
    with tenant_context(tenant):
        return sorted(EndUser.objects.values_list("external_id", flat=True))


def set_experiment_running(slug: str, running: bool) -> None:
    """online.py's experiment running (its A/B part) or stopped (its throughput part)."""
    from mfplatform.experiments.models import Experiment, ExperimentStatus
    from tenants.context import tenant_context
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug=slug)
    with tenant_context(tenant):
        status = ExperimentStatus.RUNNING if running else ExperimentStatus.STOPPED
        if Experiment.objects.update(status=status) != 1:
            raise SystemExit(f"expected one experiment in tenant {slug!r}")


def postgres_cpu() -> float:
    """CPU seconds used so far by the Postgres backends of this process's sessions."""
    import psycopg

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE

    with psycopg.connect(host=str(ROOT / "var" / "pgdata"), user=APP_ROLE, dbname=APP_DATABASE,
                         application_name=f"{APP_NAME}-admin") as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])]
    stats = proc_stats()
    return sum((cpu_of(stats[pid]) for pid in pids if pid in stats), 0.0)


def writer_cpu() -> float:
    """CPU seconds used so far by the impression writer thread (0 before it starts)."""
    from mfplatform.experiments.impressions import BUFFER

    thread = BUFFER._thread
    if thread is None or not thread.is_alive():
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def thread_cpu() -> str:
    """CPU seconds of every thread of this process, by name (what else runs)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = []
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a thread that ended meanwhile (a pool's, the writer's)
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out.append(f"{names.get(int(task.name), task.name)} {seconds:.2f} s")
    return "threads: " + ", ".join(out)


def make_caller(tenants: list[dict], k: int):
    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()

    def call(tenant: int, user: str, options: str = "") -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/recommendations",
                   "QUERY_STRING": f"user={user}&k={k}{options}", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1",
                   "HTTP_AUTHORIZATION": f"Bearer {tenants[tenant]['key']}",
                   "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr}
        status = []
        body = b"".join(app(environ, lambda s, _headers, *_: status.append(s)))
        if not status[0].startswith("200"):
            raise SystemExit(f"{status[0]}: {body[:300]!r}")

    return call


def requests_of(tenants: list[dict], mix: str, n: int, rng,
                online_users: list[str]) -> list[tuple[int, str, str]]:
    """(tenant index, user, query options) of each request of the mix."""
    if mix == "online":
        return [(0, online_users[i % len(online_users)], "") for i in range(n)]
    if mix in ("single", "precomputed"):
        # The serving benchmark's users (serving.py: one in five has events newer than the model).
        users = np.random.default_rng(1).choice(tenants[0]["users"], 2000)
        options = "&precomputed=true" if mix == "precomputed" else ""
        return [(0, f"user-{users[i % users.size]}", options) for i in range(n)]
    if mix == "uniform":
        chosen = rng.integers(len(tenants), size=n)
        return [(int(t), f"user-{rng.integers(tenants[t]['users'])}", "") for t in chosen]
    raise SystemExit(f"unknown mix {mix!r}")


_pools: dict[int, ThreadPoolExecutor] = {}


def run(call, requests: list[tuple[int, str, str]], threads: int) -> None:
    if threads == 1:
        for tenant, user, options in requests:
            call(tenant, user, options)
        return
    # The same threads throughout, as a worker's: their database sessions (and prepared
    # statements) last, and the backends' CPU is counted from one sample to the next.
    pool = _pools.setdefault(threads, ThreadPoolExecutor(threads))
    for _ in pool.map(lambda r: call(*r), requests):
        pass


def measure_slice(call, requests, threads: int, logging_on: bool,
                  profiler: cProfile.Profile | None) -> dict:
    from django.conf import settings

    from mfplatform.experiments.impressions import BUFFER

    settings.IMPRESSION_LOGGING = logging_on
    pg, cpu, writer, wall = postgres_cpu(), time.process_time(), writer_cpu(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    run(call, requests, threads)
    BUFFER.flush()  # what the slice logged is written within it (the writer's work, here)
    if profiler is not None:
        profiler.disable()
    return {"cpu": time.process_time() - cpu, "writer": writer_cpu() - writer,
            "wall": time.perf_counter() - wall, "pg": postgres_cpu() - pg}


def measure_mix(call, requests, arms: list[str], args, mix: str) -> list[dict]:
    """CPU totals per arm over the mix's requests, in slices, the arms taking turns."""
    totals = [{"cpu": 0.0, "writer": 0.0, "wall": 0.0, "pg": 0.0} for _ in arms]
    profilers = {i: cProfile.Profile(time.process_time) for i, arm in enumerate(arms)
                 if f"{mix}:{arm}" in args.profile.split(",")}
    per_slice = -(-len(requests) // args.slices)
    order = list(range(len(arms)))
    for s in range(args.slices):
        part = requests[s * per_slice:(s + 1) * per_slice]
        for i in order[:: 1 if s % 2 == 0 else -1]:
            used = measure_slice(call, part, args.threads, arms[i] == "on", profilers.get(i))
            for name, value in used.items():
                totals[i][name] += value
    for i, profiler in profilers.items():
        path = f"/tmp/serving_cpu-{mix}-{arms[i]}.prof"
        profiler.dump_stats(path)
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats(args.sort).print_stats(args.top)
        print(f"profile ({path}):\n{stream.getvalue()}", flush=True)
    return totals


def report(mix: str, arms: list[str], totals: list[dict], requests) -> None:
    n = len(requests)
    for arm, t in zip(arms, totals, strict=True):
        print(f"{mix} logging {arm:3}: web {1000 * t['cpu'] / n:.3f} ms (impression writer "
              f"{1000 * t['writer'] / n:.3f}), postgres {1000 * t['pg'] / n:.3f} ms, wall "
              f"{1000 * t['wall'] / n:.3f} ms a request ({n} requests, "
              f"{len({r[0] for r in requests})} tenants)", flush=True)
    if len(arms) == 2:
        first, second = totals
        print(f"{mix}: logging {arms[0]} - {arms[1]}: web "
              f"{1000 * (first['cpu'] - second['cpu']) / n:+.3f} ms, postgres "
              f"{1000 * (first['pg'] - second['pg']) / n:+.3f} ms a request", flush=True)


def main() -> None:
    args = parse_args()
    environment(args.database)
    import django

    django.setup()
    from django.conf import settings

    tenants = tenants_to_ask(args.tenant)
    call = make_caller(tenants, args.k)
    online_users = user_ids(args.tenant) if "online" in args.mixes.split(",") else []
    if online_users:
        set_experiment_running(args.tenant, args.experiment)
    rng = np.random.default_rng(5)
    settings.IMPRESSION_LOGGING = True
    # One process here serves far fewer requests a second than a loaded worker, so a write
    # every second would hold fewer rows and its fixed cost would weigh more: write by rows.
    settings.IMPRESSION_FLUSH_ROWS, settings.IMPRESSION_FLUSH_SECONDS = args.flush_rows, 3600.0
    for t in range(len(tenants)):  # bundles, versions, keys, prepared statements
        for u in range(3):
            call(t, f"user-{u}")
    arms = args.logging.split(",")  # "on,off"; "on,on" or "off,off" shows the noise (A/A)
    print(f"{machine_line()}; {len(tenants)} tenants in {args.database}; "
          f"{args.threads} request thread(s); load {os.getloadavg()[0]:.1f}", flush=True)
    for mix in args.mixes.split(","):
        requests = requests_of(tenants, mix, args.requests, rng, online_users)
        run(call, requests[: args.requests // 4], args.threads)  # the mix's steady state
        totals = measure_mix(call, requests, arms, args, mix)
        report(mix, arms, totals, requests)
    print(f"load {os.getloadavg()[0]:.1f} at the end", flush=True)
    for pool in _pools.values():
        pool.shutdown()
    print(thread_cpu(), flush=True)


if __name__ == "__main__":
    main()
