"""Shared helpers for the benchmarks: machine line, data paths, memory, RESULTS.md sections.

Import this module before numpy when thread pinning matters: :func:`pin_threads` must run
before numpy/numba load their thread pools.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import re
import resource
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def pin_threads(compute_threads: int = 2) -> None:
    """BLAS to 1 thread; numba to ``compute_threads``. Call before importing numpy."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ["NUMBA_NUM_THREADS"] = str(compute_threads)


def movielens_dir() -> Path:
    """ml-latest-small: $MOVIELENS_DIR, else ../shared/datasets/ml-latest-small."""
    configured = os.environ.get("MOVIELENS_DIR")
    if configured:
        return Path(configured)
    return ROOT.parent / "shared" / "datasets" / "ml-latest-small"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def machine_line() -> str:
    """One line naming the machine and the versions that matter for the numbers."""
    import numba
    import numpy

    import mfengine

    return (
        f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, numba {numba.__version__}, mfengine {mfengine.__version__}"
    )


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), MB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set size (getrusage), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_section(name: str, markdown: str, path: Path = RESULTS,
                  parent: str | None = None) -> None:
    """Replace the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in
    RESULTS.md (creating the file or appending the section if missing); other sections stay.

    With ``parent``, a missing block goes at the end of the parent's block (a subsection, e.g.
    one run size of a benchmark whose other sizes and notes stay as they are); a parent that
    is missing too is appended first, empty."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif parent is not None:
        parent_end = f"<!-- {parent}:end -->"
        if parent_end not in text:
            text = text.rstrip() + f"\n\n<!-- {parent}:start -->\n{parent_end}\n"
        at = text.index(parent_end)
        text = text[:at].rstrip() + "\n\n" + block + "\n" + text[at:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def command_line() -> str:
    """The command that ran this benchmark, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):  # a script outside the repository keeps its path
        script = script.relative_to(ROOT)
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, *gunicorn_args: str, env: dict[str, str] | None = None):
    """The platform under gunicorn on 127.0.0.1:`port` (extra options after the bind), once
    /healthz answers, with `env` over this process's environment; the caller stops it."""
    import subprocess
    import time
    import urllib.error
    import urllib.request

    # Each server its own metrics folder (unless the caller's environment names one): gunicorn
    # empties it on start, so a second server sharing it would delete the first one's files.
    # Removed when this benchmark exits (a run starts dozens of servers).
    metrics_dir = ROOT / "var" / f"prometheus-{port}"
    metrics = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", *gunicorn_args,
         "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env={**metrics, **os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return server
        except urllib.error.HTTPError:  # it answers; 503 names what is down (no worker here)
            return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("server did not start")


BENCH_DB = "mfbench"


@contextlib.contextmanager
def bench_database(name: str = BENCH_DB, keep: bool = False, fresh: bool = False):
    """A throwaway database on the embedded server, migrated; dropped afterwards (with `keep`:
    reused when it exists and left in place, so a later run can measure without rebuilding;
    with `keep` and `fresh`: made anew, then left in place for another benchmark to read).
    Sets the environment so that this process (Django) and its children use it."""
    import subprocess

    import psycopg

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE, ensure_running

    socket_dir = ensure_running(ROOT / "var" / "pgdata")

    def admin(sql: str) -> None:
        with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE,
                             autocommit=True) as conn:
            conn.execute(sql)

    if fresh or not keep:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    with psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    if not exists:
        admin(f"CREATE DATABASE {name}")
    env = {"EMBEDDED_DB_NAME": name, "DEBUG": "0", "SECRET_KEY": "benchmark-only-secret",
           "CELERY_BROKER_DIR": str(ROOT / "var" / "bench-broker" / name),
           "DJANGO_SETTINGS_MODULE": "mfplatform.settings", "API_RATE_LIMIT": "1000000/s"}
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=os.environ.copy(), check=True)
    try:
        yield socket_dir
    finally:
        from django.db import connections

        connections.close_all()
        if not keep:
            admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields after the command name (ppid is [1],
    utime/stime [11]/[12]); one that ends while being read is left out."""
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stats[int(pid)] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
    return stats


def cpu_of(fields: list[str]) -> float:
    """CPU seconds (user + system) of a process's stat fields."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int, stats: dict[int, list[str]]) -> set[int]:
    """`root` and every process below it."""
    tree, grown = {root}, True
    while grown:
        below = {pid for pid, fields in stats.items() if int(fields[1]) in tree} - tree
        tree |= below
        grown = bool(below)
    return tree


def process_tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds used so far by process `root` and every process below it (a gunicorn
    master and its workers; the postmaster and its backends), per process: Linux /proc."""
    stats = proc_stats()
    return {pid: cpu_of(stats[pid]) for pid in process_tree(root, stats) if pid in stats}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds a process tree used between two process_tree_cpu samples, process by
    process: one that ended in between is left out (a plain difference of totals would take
    away all the CPU of its life, e.g. a backend of a stopped server or an autovacuum worker,
    and go negative); one that started is counted from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def worker_pids(master_pid: int) -> list[int]:
    """A gunicorn master's workers (the processes whose parent it is)."""
    return sorted(pid for pid, fields in proc_stats().items()
                  if int(fields[1]) == master_pid)


def connection_owners(port: int, workers: list[int]) -> dict[int, int]:
    """Client port -> the worker that accepted the connection (the worker holding the
    server side's socket: /proc/net/tcp names its inode, /proc/<pid>/fd who holds it)."""
    inodes = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:  # established
            inodes[f"socket:[{inode}]"] = int(remote.rsplit(":", 1)[1], 16)
    owners = {}
    for pid in workers:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target in inodes:
                        owners[inodes[target]] = pid
    return owners
