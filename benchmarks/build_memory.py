"""Where the dataset build's memory goes (issue #20): the build stage alone, in process.

    .venv/bin/python benchmarks/build_memory.py [--users 150000 --items 25000 --events 2000000]
                                                [--keep] [--reuse]

A synthetic tenant (benchmarks/pipeline.py's generator, loader and plan) in a database of its
own, `mfbuildmem` on the embedded server: `--keep` leaves it there afterwards, `--reuse`
measures on the one kept (when it holds the same size; loading 2M events takes a minute).
The build stage then runs as the worker runs it (build_dataset_version, then the dataset's
catalogue) in a fresh process with the platform imported, under tracemalloc (numpy reports its
buffers to it) and with the process's VmHWM reset at each step (/proc/self/clear_refs). Every
function of the dataset build's modules and of mfengine.data is wrapped as a step: per step,
its peak above its own start and above the build's start (traced and resident), and what it
left allocated; at the end, what the build hands to the training stage. It prints only.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, command_line, machine_line  # noqa: E402

DB = "mfbuildmem"
MB = 2**20
HEADER = ("| step | calls | peak above its start: traced | VmHWM | above the build's start: traced"
          " | VmHWM | left allocated |")
BUILD = "build stage (build_dataset_version, then the catalogue)"
# The build's modules: every function defined in them becomes a step.
MODULES = ("mfplatform.training.dataset", "mfplatform.training.event_stream",
           "mfplatform.training.copy_reader", "mfengine.data")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150_000)
    parser.add_argument("--items", type=int, default=25_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--shuffled", action="store_true",
                        help="insert the events in random order (the read then sorts them)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="measure on the kept database if it holds this size")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def environment() -> dict[str, str]:
    return {**os.environ, "EMBEDDED_DB_NAME": DB, "DEBUG": "1",
            "CELERY_BROKER_DIR": str(ROOT / "var" / "bench-broker" / DB),
            "DJANGO_SETTINGS_MODULE": "mfplatform.settings"}


def tenant_label(args: argparse.Namespace) -> str:
    return (f"buildmem {args.users} {args.items} {args.events}"
            f"{' shuffled' if args.shuffled else ''}")


def kept_database_fits(args: argparse.Namespace) -> bool:
    """Whether the kept database holds this size's tenant (pipeline.py's loader, complete)."""
    import psycopg

    from mfplatform.embedded_db import APP_ROLE, ensure_running

    socket_dir = ensure_running(ROOT / "var" / "pgdata")
    try:
        with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=DB) as conn:
            row = conn.execute("SELECT 1 FROM tenants_tenant WHERE name = %s",
                               [tenant_label(args)]).fetchone()
    except psycopg.Error:
        return False
    return row is not None


def set_up(args: argparse.Namespace) -> None:
    """A database with the tenant, its data and pipeline.py's plan; the tenant is named after
    the size only once everything is in (so a half-loaded database is never reused)."""
    from benchmarks.pipeline import create_database, load_data

    create_database(DB)
    env = environment()
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from mfengine.synthetic import generate
    from mfplatform.training.services import create_plan
    from tenants.context import tenant_context
    from tenants.models import Tenant

    started = time.perf_counter()
    tenant = Tenant.objects.create(slug="bench", name="loading")
    data = generate(n_users=args.users, n_items=args.items, n_interactions=args.events,
                    seed=0, start=int(time.time()) - 61 * 86400, days=60)
    if args.shuffled:  # events arriving late: the table's order is not (timestamp, id)
        import dataclasses

        import numpy as np

        order = np.random.default_rng(0).permutation(len(data.user_ids))
        data = dataclasses.replace(data, **{name: getattr(data, name)[order] for name in (
            "user_ids", "item_ids", "values", "timestamps", "event_types")})
    with tenant_context(tenant):
        load_data(tenant, data)
        create_plan(tenant, "bench", {
            "events": {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
            "training": {"strategy": "als", "factors": 64, "iterations": 15}})
    Tenant.objects.filter(pk=tenant.pk).update(name=tenant_label(args))
    print(f"loaded {args.events:,} events in {time.perf_counter() - started:.1f} s",
          flush=True)


class Steps:
    """Each wrapped call's peaks (tracemalloc and VmHWM), nested: a step's peak includes its
    inner steps', whose own peaks are read and reset as they start."""

    def __init__(self) -> None:
        self.stats: dict[str, dict] = {}
        self.stack: list[dict] = []
        self.base_traced = self.base_rss = 0

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    def _peaks(self) -> tuple[int, int]:
        return tracemalloc.get_traced_memory()[1], self._status("VmHWM")

    @staticmethod
    def _reset() -> None:
        tracemalloc.reset_peak()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS

    def begin(self) -> None:
        tracemalloc.start()
        self._reset()
        self.base_traced, self.base_rss = tracemalloc.get_traced_memory()[0], self._status(
            "VmRSS")

    def enter(self, name: str) -> dict:
        self.stats.setdefault(name, {"calls": 0, "depth": len(self.stack), "own": 0,
                                     "own_rss": 0, "build": 0, "build_rss": 0, "held": 0})
        traced, rss = self._peaks()
        if self.stack:
            top = self.stack[-1]
            top["peak_traced"], top["peak_rss"] = (max(top["peak_traced"], traced),
                                                   max(top["peak_rss"], rss))
        self._reset()
        frame = {"traced": tracemalloc.get_traced_memory()[0], "rss": self._status("VmRSS")}
        frame["peak_traced"], frame["peak_rss"] = frame["traced"], frame["rss"]
        self.stack.append(frame)
        return frame

    def leave(self, name: str, frame: dict) -> None:
        traced, rss = self._peaks()
        frame["peak_traced"] = max(frame["peak_traced"], traced)
        frame["peak_rss"] = max(frame["peak_rss"], rss)
        self.stack.pop()
        if self.stack:
            top = self.stack[-1]
            top["peak_traced"] = max(top["peak_traced"], frame["peak_traced"])
            top["peak_rss"] = max(top["peak_rss"], frame["peak_rss"])
        stat = self.stats[name]
        stat["calls"] += 1
        stat["own"] = max(stat["own"], frame["peak_traced"] - frame["traced"])
        stat["own_rss"] = max(stat["own_rss"], frame["peak_rss"] - frame["rss"])
        stat["build"] = max(stat["build"], frame["peak_traced"] - self.base_traced)
        stat["build_rss"] = max(stat["build_rss"], frame["peak_rss"] - self.base_rss)
        stat["held"] += tracemalloc.get_traced_memory()[0] - frame["traced"]

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def step(*args, **kwargs):
            frame = self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave(name, frame)

        step.__wrapped_step__ = True
        return step


def instrument(steps: Steps) -> None:
    """Every function defined in MODULES (and their classes' methods) becomes a step, wherever
    one of these modules holds it (an imported name too)."""
    import importlib

    modules = {name: importlib.import_module(name) for name in MODULES}
    wrapped: dict[int, object] = {}

    def step_of(fn):
        if id(fn) not in wrapped:
            short = fn.__module__.rsplit(".", 1)[-1]
            wrapped[id(fn)] = steps.wrap(f"{short}.{fn.__qualname__}", fn)
        return wrapped[id(fn)]

    for module in modules.values():
        for attr, value in list(vars(module).items()):
            if measurable(value) and value.__module__ in modules:
                setattr(module, attr, step_of(value))
            elif inspect.isclass(value) and value.__module__ == module.__name__:
                for method, fn in list(vars(value).items()):
                    if measurable(fn) and not method.startswith("__"):
                        setattr(value, method, step_of(fn))


def measurable(fn) -> bool:
    """A plain function: a generator's body runs after its call returns (its allocations
    count in its consumer's step), and the COPY parser's ones run once per row."""
    return inspect.isfunction(fn) and not inspect.isgeneratorfunction(fn)


def array_bytes(obj) -> int:
    """The numpy (and sparse) buffers an object holds directly."""
    import numpy as np

    total = 0
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif hasattr(value, "indptr"):
            total += value.data.nbytes + value.indices.nbytes + value.indptr.nbytes
    return total


def measure(args: argparse.Namespace) -> None:
    """The child: the build stage alone under the steps' instrumentation; prints JSON."""
    import django

    django.setup()
    from types import SimpleNamespace

    from django.core.files.storage import default_storage
    from django.utils import timezone

    import mfplatform.registry.runs  # noqa: F401  (the worker's imports: the platform, numba)
    from mfplatform.training import dataset as dataset_module
    from mfplatform.training.models import PlanRevision
    from mfplatform.training.pipeline import _catalogue
    from tenants.context import tenant_context
    from tenants.models import Tenant

    tenant = Tenant.objects.get(name=tenant_label(args))
    steps = Steps()
    instrument(steps)
    with tenant_context(tenant):
        revision = PlanRevision.objects.filter(plan__name="bench").latest("revision")
        cutoff = timezone.now()
        started = time.perf_counter()
        steps.begin()
        frame = steps.enter(BUILD)
        dataset, events, prepared = dataset_module.build_dataset_version(tenant, revision,
                                                                         cutoff)
        catalogue = _catalogue(SimpleNamespace(tenant=tenant), prepared.item_ids)
        steps.leave(BUILD, frame)
        seconds = time.perf_counter() - started
        held = tracemalloc.get_traced_memory()[0] - steps.base_traced
        tracemalloc.stop()
        result = {"stats": steps.stats, "seconds": seconds, "held": held,
                  "events_bytes": array_bytes(events), "prepared_bytes": array_bytes(prepared),
                  "catalogue_items": len(catalogue["categories"]),
                  "n_events": len(events.user_ids), "nnz": int(prepared.matrix.nnz),
                  "shape": list(prepared.shape), "hash": prepared.content_hash,
                  "artifact_bytes": default_storage.size(dataset.artifact)}
        default_storage.delete(dataset.artifact)
        dataset.delete()
    print("RESULT " + json.dumps(result), flush=True)


def report(args: argparse.Namespace, result: dict, load: str) -> str:
    stats = result["stats"]
    build = stats.pop(BUILD)
    shown = [(name, s) for name, s in stats.items()
             if max(s["own"], s["own_rss"], abs(s["held"])) >= MB]
    rows = "\n".join(
        f"| {'&nbsp;&nbsp;' * (s['depth'] - 1)}{name} | {s['calls']} | {s['own'] / MB:,.0f} | "
        f"{s['own_rss'] / MB:,.0f} | {s['build'] / MB:,.0f} | {s['build_rss'] / MB:,.0f} | "
        f"{s['held'] / MB:,.0f} |" for name, s in shown)
    millions = args.events / 1e6
    return f"""`{command_line()}` — {machine_line()}; load average {load}

{result['n_events']:,} events kept, matrix {result['shape'][0]:,} x {result['shape'][1]:,}
with {result['nnz']:,} non-zeros (hash {result['hash'][:16]}), build {result['seconds']:.1f} s
(under tracemalloc), artifact {result['artifact_bytes'] / MB:,.1f} MB.

Build stage peak above its start: **{build['build_rss'] / MB:,.0f} MB resident (VmHWM),
{build['build_rss'] / MB / millions:,.0f} MB per million events**; {build['build'] / MB:,.0f} MB
traced (tracemalloc). Held when it ends (handed to the training stage): {result['held'] / MB:,.0f}
MB traced, of which the event arrays {result['events_bytes'] / MB:,.0f} MB and the prepared
data {result['prepared_bytes'] / MB:,.0f} MB.

Steps (each function of the build's modules; indented: called inside the one above; calls
aggregated: the largest peak, the sum of what was left; steps under 1 MB left out; MB):

{HEADER}
|---|---|---|---|---|---|---|
{rows}
"""


def main() -> None:
    args = parse_args()
    if args.measure:
        measure(args)
        return
    if not (args.reuse and kept_database_fits(args)):
        set_up(args)
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        child = subprocess.run([sys.executable, __file__, "--measure", "--users",
                                str(args.users), "--items", str(args.items), "--events",
                                str(args.events), *(["--shuffled"] if args.shuffled else [])],
                               cwd=ROOT, env=environment(), check=True,
                               stdout=subprocess.PIPE, text=True)
    finally:
        if not args.keep:
            from benchmarks.pipeline import drop_database

            drop_database(DB)
    line = next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))
    print(report(args, json.loads(line[len("RESULT "):]), load))


if __name__ == "__main__":
    main()
