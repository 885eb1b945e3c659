"""Memory of one ALS fit as the data grows: mfengine in the worker's process, Spark in local[2].

Run from the repository root:  .venv/bin/python benchmarks/spark_sizing.py
[--events 200000,400000,800000] [--engines als,spark_als] [--no-write]. Writes the
"spark_sizing" section of benchmarks/RESULTS.md (with --no-write it only prints), the measured
half of the sizing note under the Spark comparison; the extrapolation is written by hand.

Each size is synthetic (mfengine.synthetic, seed 0) at the pipeline benchmark's density (4M
events: 300k users, 50k items), binary, 64 factors and 15 iterations as a default plan. Each
(engine, size) fits in a fresh child process, so every peak is its own: the child loads the
matrix, resets its peak resident memory (Linux /proc/self/clear_refs), fits and reports the
peak (VmHWM) above what it held before the fit. For Spark the child also starts the session
first and reports the JVM's resident memory idle and at its peak: in local mode that one JVM is
the driver and the executors, so it holds Spark's copy of the data (ratings in blocks, both
factor sets, shuffle buffers).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    command_line,
    current_rss_mb,
    machine_line,
    peak_rss_mb,
    pin_threads,
    write_section,
)

THREADS = 2
pin_threads(THREADS)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mfengine  # noqa: E402
from mfengine.synthetic import generate  # noqa: E402

PLAN = {"factors": 64, "iterations": 15, "random_state": 0}
# The JVM's heap limit: room enough that the sizes measured here do not hit it.
SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "4g",
              "spark.ui.showConsoleProgress": "false"}


def matrix_for(events: int) -> sp.csr_matrix:
    """Binary users x items matrix of `events` synthetic events at the pipeline's density."""
    n_users, n_items = events * 3 // 40, max(events // 80, 100)
    data = generate(n_users=n_users, n_items=n_items, n_interactions=events, seed=0)
    matrix = sp.csr_matrix((np.ones(data.user_ids.size, dtype=np.float32),
                            (data.user_ids, data.item_ids)), shape=(n_users, n_items))
    matrix.data[:] = 1.0  # repeats summed above: the plan's binary strength
    return matrix


def child(engine: str, path: str) -> dict:
    """Fit `engine` on the matrix saved at `path`; memory in MB."""
    matrix = sp.load_npz(path).tocsr()
    report: dict = {"engine": engine}
    params = dict(PLAN)
    if engine == "spark_als":
        import mfengine_spark
        from benchmarks.spark import jvm_peak_rss_mb

        mfengine_spark.configure("local[2]", **SPARK_CONF)
        mfengine_spark.spark_session()
        report["jvm_idle_mb"] = jvm_peak_rss_mb("VmRSS")
    else:
        params["num_threads"] = THREADS
    gc.collect()
    report["before_mb"] = current_rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    started = time.perf_counter()
    mfengine.create(engine, **params).fit(matrix)
    report["fit_s"] = time.perf_counter() - started
    report["growth_mb"] = peak_rss_mb() - report["before_mb"]
    if engine == "spark_als":
        report["jvm_peak_mb"] = jvm_peak_rss_mb()
    return report


def measure(events: int, engines: list[str]) -> list[dict]:
    matrix = matrix_for(events)
    rows = []
    with tempfile.TemporaryDirectory(prefix="spark-sizing-") as folder:
        path = str(Path(folder) / "matrix.npz")
        sp.save_npz(path, matrix)
        for engine in engines:
            done = subprocess.run([sys.executable, __file__, "--child", engine, path],
                                  capture_output=True, text=True)
            if done.returncode:  # say why (a 1.6M-event child once failed without a word)
                raise SystemExit(f"{engine} at {events:,} events failed "
                                 f"({done.returncode}):\n{done.stderr[-4000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(events=events, users=matrix.shape[0], items=matrix.shape[1],
                       nnz=matrix.nnz)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def slope(rows: list[dict], key: str) -> float:
    """MB per million non-zeros between the smallest and the largest size."""
    first, last = rows[0], rows[-1]
    return (last[key] - first[key]) / ((last["nnz"] - first["nnz"]) / 1e6)


def table(rows: list[dict]) -> str:
    ours = [row for row in rows if row["engine"] == "als"]
    spark = {row["events"]: row for row in rows if row["engine"] == "spark_als"}
    lines = ["| events | users x items | non-zeros | mfengine fit: peak above before, MB | "
             "fit s | Spark: Python peak above before, MB | JVM idle MB | JVM peak MB | fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    # Rows by size; an engine not run (--engines) shows as such.
    by_size = {row["events"]: row for row in rows}
    for events in sorted(by_size):
        a = next((row for row in ours if row["events"] == events), None)
        b = spark.get(events)
        if a is None:
            a = {**by_size[events], "growth_mb": float("nan"), "fit_s": float("nan")}
        theirs = (f"{b['growth_mb']:,.0f} | {b['jvm_idle_mb']:,.0f} | {b['jvm_peak_mb']:,.0f} | "
                  f"{b['fit_s']:.1f}") if b else "not run | | |"
        lines.append(f"| {a['events']:,} | {a['users']:,} x {a['items']:,} | {a['nnz']:,} | "
                     f"{a['growth_mb']:,.0f} | {a['fit_s']:.1f} | {theirs} |")
    if len(ours) > 1:
        lines.append(f"\nmfengine fit growth per million non-zeros (smallest to largest "
                     f"size): {slope(ours, 'growth_mb'):,.0f} MB.")
    if len(spark) > 1:
        measured = sorted(spark.values(), key=lambda row: row["nnz"])
        lines.append(f"Spark: the JVM {slope(measured, 'jvm_peak_mb'):,.0f} MB, the Python "
                     f"process {slope(measured, 'growth_mb'):,.0f} MB.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="200000,400000,800000",
                        help="comma-separated event counts")
    parser.add_argument("--engines", default="als,spark_als",
                        help="comma-separated: als, spark_als")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    import os

    load_before = os.getloadavg()[0]
    engines = args.engines.split(",")
    rows = [row for events in map(int, args.events.split(",")) for row in measure(events, engines)]
    markdown = (
        "### Memory of one fit as the data grows (measured)\n\n"
        f"Command: `{command_line()}`  \n"
        f"Machine: {machine_line()}; load average {load_before:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (times are inflated by the shared cores; "
        "memory is not).  \n"
        "Synthetic, binary, the pipeline benchmark's density; 64 factors, 15 iterations; each "
        "fit in a fresh process. mfengine: the peak resident memory of the fitting process "
        "above what it held with the matrix loaded. Spark (local[2], driver heap "
        f"{SPARK_CONF['spark.driver.memory']}): the same for the Python side (Parquet "
        "written, factors collected), and the JVM's resident memory idle (session started) "
        "and at its peak.\n\n" + table(rows))
    if not args.no_write:
        write_section("spark_sizing", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
