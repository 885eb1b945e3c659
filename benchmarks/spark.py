"""Spark MLlib ALS (local[2]) next to mfengine ALS on the same data: fit seconds and NDCG@10.

Run from the repository root:  .venv/bin/python benchmarks/spark.py [--synthetic-events N]
Writes the "spark" section of benchmarks/RESULTS.md.

Data: ml-latest-small with the per-user temporal split of BENCHMARK.md (each user's last 20%
of ratings are test, test positives rating >= 4, train binary), and a synthetic set
(mfengine.synthetic, planted clusters) with the same split. Rows per data set: mfengine ALS
at its defaults (64 factors, regularization 50, alpha 2, 15 iterations); Spark ALS with the
same factors, alpha and iterations at its default regParam 0.1 (what an als plan switched to
Spark trains with) and at 0.01. Spark's penalty is per entry of a row (ALS-WR), mfengine's
absolute, so the values are not comparable. Spark's fit time includes writing the Parquet and
collecting the factors; the JVM's start and warm-up fit are timed apart and left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    command_line,
    machine_line,
    movielens_dir,
    peak_rss_mb,
    pin_threads,
    write_section,
)

THREADS = 2
pin_threads(THREADS)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mfengine  # noqa: E402
import mfengine_spark  # noqa: E402
from mfengine.datasets import load_movielens  # noqa: E402
from mfengine.evaluation import evaluate_model, temporal_split  # noqa: E402
from mfengine.synthetic import generate  # noqa: E402

SEED = 0
K = 10
SHARED = {"factors": 64, "alpha": 2.0, "iterations": 15, "random_state": SEED}
ALS_REGULARIZATION = 50.0
# Measured by an earlier run of this script (same command, load 18 -> 10), which also had a
# row with mfengine's regularization converted per user; kept because it is why the platform
# does not convert.
CONVERSION_NOTE = (
    "Why an als plan switched to Spark does not keep its regularization: an earlier run of "
    "this command also trained Spark with mfengine's 50 divided by the mean train interactions "
    "per user (keeping an average user's penalty): 0.378 on ml-latest-small gave NDCG@10 "
    "0.0873 (-2.7% vs mfengine), but 3.79 on the synthetic set gave 0.0004 (-99.8%): ALS-WR "
    "multiplies it by each item's count too, and popular items have thousands.")
SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g",
              "spark.ui.showConsoleProgress": "false"}


def movielens() -> tuple[str, sp.csr_matrix, sp.csr_matrix]:
    ml = load_movielens(movielens_dir())
    users, items, _, catalogue = ml.encode()
    shape = (int(users.max()) + 1, len(catalogue))
    train, test = temporal_split(users, items, ml.timestamps, ml.values.astype(np.float64),
                                 shape=shape, positive_threshold=4.0)
    return "ml-latest-small", train, test


def synthetic(events: int) -> tuple[str, sp.csr_matrix, sp.csr_matrix]:
    n_users, n_items = events // 20, max(events // 80, 100)
    data = generate(n_users=n_users, n_items=n_items, n_interactions=events, seed=SEED)
    train, test = temporal_split(data.user_ids, data.item_ids, data.timestamps,
                                 shape=(n_users, n_items))
    return f"synthetic ({n_users:,} users, {n_items:,} items, {events:,} events)", train, test


def jvm_peak_rss_mb() -> float:
    """Peak resident memory (VmHWM) of the JVMs this process started, MB."""
    me, total = os.getpid(), 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0")) == me and b"java" in cmdline:
            total += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
    return total


def measure(name: str, strategy: str, params: dict, train, test) -> dict:
    started = time.perf_counter()
    model = mfengine.create(strategy, **params).fit(train)
    fit_s = time.perf_counter() - started
    overall = evaluate_model(model, train, test, ks=(K,))["metrics"]["overall"][str(K)]
    return {"name": name, "fit_s": fit_s, "ndcg": overall["ndcg"],
            "recall": overall["recall"], "users": overall["n_users"],
            "regularization": params["regularization"]}


def compare(label: str, train: sp.csr_matrix, test: sp.csr_matrix) -> str:
    per_user = train.nnz / train.shape[0]
    rows = [
        measure("mfengine als", "als", {**SHARED, "regularization": ALS_REGULARIZATION,
                                        "num_threads": THREADS}, train, test),
        measure("spark_als, Spark's default regParam", "spark_als",
                {**SHARED, "regularization": 0.1}, train, test),
        measure("spark_als, regParam 0.01", "spark_als",
                {**SHARED, "regularization": 0.01}, train, test),
    ]
    reference = rows[0]["ndcg"]
    lines = [f"**{label}**: train {train.nnz:,} interactions ({per_user:.1f} per user), "
             f"{rows[0]['users']:,} users evaluated\n",
             "| engine | regularization | fit s | NDCG@10 | vs mfengine | Recall@10 |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['regularization']:.4g} | {row['fit_s']:.1f} | "
                     f"{row['ndcg']:.4f} | {row['ndcg'] / reference - 1:+.1%} | "
                     f"{row['recall']:.4f} |")
    return "\n".join(lines)


def _env_prefix() -> str:
    configured = os.environ.get("MOVIELENS_DIR")
    return f"MOVIELENS_DIR={configured} " if configured else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-events", type=int, default=400_000)
    args = parser.parse_args()
    load_before = os.getloadavg()

    started = time.perf_counter()
    mfengine_spark.configure("local[2]", **SPARK_CONF)
    mfengine_spark.spark_session()
    session_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = sp.random(200, 100, density=0.1, random_state=0, format="csr", dtype=np.float32)
    mfengine.create("spark_als", factors=8, iterations=2, random_state=0).fit(warm)
    warmup_s = time.perf_counter() - started

    sections = [compare(*movielens()), compare(*synthetic(args.synthetic_events))]
    load_after = os.getloadavg()
    jvm_mb, python_mb = jvm_peak_rss_mb(), peak_rss_mb()
    mfengine_spark.stop_session()

    import subprocess

    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    markdown = (
        "## Spark ALS vs mfengine ALS\n\n"
        f"Command: `{_env_prefix()}{command_line()}`  \n"
        f"Machine: {machine_line()}, pyspark {pyspark.__version__} (local[2], "
        f"{java.splitlines()[0] if java else 'java'}); load average "
        f"{load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end (the 2 cores "
        "are shared with other work, so absolute times are inflated; compare within a "
        "table).  \n"
        f"Spark session start {session_s:.1f} s and a warm-up fit {warmup_s:.1f} s, not "
        f"counted below. Peak memory: the JVM {jvm_mb:,.0f} MB (driver heap 2g), this Python "
        f"process {python_mb:,.0f} MB.  \n"
        "Same split, factors (64), alpha (2), iterations (15) and seed for every row; "
        "regularization as stated (mfengine's is absolute, Spark's is per entry of a row). "
        "Spark's fit includes writing the Parquet and collecting the factors.\n\n"
        + CONVERSION_NOTE + "\n\n"
        + "\n\n".join(sections)
    )
    write_section("spark", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
