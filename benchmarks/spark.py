"""Spark MLlib ALS (local[2]) next to mfengine ALS on the same data: fit seconds and NDCG@10.

Run from the repository root:  .venv/bin/python benchmarks/spark.py [--synthetic-events N]
Writes the "spark" section of benchmarks/RESULTS.md.

Data: ml-latest-small with the per-user temporal split of BENCHMARK.md (each user's last 20%
of ratings are test, test positives rating >= 4, train binary), and a synthetic set
(mfengine.synthetic, planted clusters) with the same split. Each plan (64 factors, 15
iterations, seed 0) is trained by mfengine ALS and by spark_als with the same hyperparameters:
the platform's default (regularization "auto", alpha 1) and a fixed lambda of 50 at alpha 2.
spark_als turns the plan's penalty into the regParam of the same strength
(mfengine.als.weighted_lambda; the table shows the regParam used). At matched
hyperparameters, mfengine ALS also trains on Spark's objective: weighted lambda
(regularization_scaling "count") at the regParam Spark used, the same alpha, with its
conjugate-gradient solver and with exact (Cholesky) solves as Spark's. Spark's fit time includes
writing the Parquet and collecting the factors; the JVM's start and warm-up fit are timed
apart and left out.
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
from benchmarks.shapes import movielens_temporal  # noqa: E402
from mfengine.evaluation import evaluate_model, temporal_split  # noqa: E402
from mfengine.synthetic import generate  # noqa: E402

SEED = 0
K = 10
SHARED = {"factors": 64, "iterations": 15, "random_state": SEED}
PLANS = {"default (auto, alpha 1)": {},
         "fixed 50, alpha 2": {"regularization": 50.0, "alpha": 2.0,
                               "regularization_scaling": "none"}}
# The matched rows: mfengine ALS on Spark's objective (weighted lambda at the regParam Spark
# used, same alpha; Spark's confidence 1 + alpha |r| is mfengine's 1 + alpha r on this
# non-negative data), with the plan's conjugate-gradient solver and with exact solves (Spark
# solves each row by Cholesky).
MATCHED = {"als, matched (cg)": "cg", "als, matched (cholesky)": "cholesky"}
# Before the mapping (same command, 2026-12-01, load 9-10): spark_als at Spark's default
# regParam 0.1 and alpha 2, against mfengine ALS with a fixed 50 at alpha 2.
BEFORE_NOTE = (
    "Before the mapping, an als plan switched to Spark trained at Spark's default regParam "
    "0.1 and alpha 2 whatever the plan said: NDCG@10 +1.3% on ml-latest-small but -39.2% on "
    "the synthetic set against mfengine ALS at a fixed 50 and alpha 2. mfengine's own ALS "
    "with weighted-lambda scaling (the objective Spark solves) at 0.1 lost as much there "
    "(-37%): the gap was the penalty, not the engine.")
SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g",
              "spark.ui.showConsoleProgress": "false"}


def movielens() -> tuple[str, sp.csr_matrix, sp.csr_matrix]:
    split = movielens_temporal()
    return "ml-latest-small", split.train, split.test


def synthetic(events: int) -> tuple[str, sp.csr_matrix, sp.csr_matrix]:
    n_users, n_items = events // 20, max(events // 80, 100)
    data = generate(n_users=n_users, n_items=n_items, n_interactions=events, seed=SEED)
    train, test = temporal_split(data.user_ids, data.item_ids, data.timestamps,
                                 shape=(n_users, n_items))
    return f"synthetic ({n_users:,} users, {n_items:,} items, {events:,} events)", train, test


def jvm_peak_rss_mb(field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of the JVMs this process started, MB."""
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
            total += int(fields.get(field, "0 kB").split()[0]) / 1024
    return total


def measure(name: str, strategy: str, params: dict, train, test) -> dict:
    started = time.perf_counter()
    model = mfengine.create(strategy, **params).fit(train)
    fit_s = time.perf_counter() - started
    overall = evaluate_model(model, train, test, ks=(K,))["metrics"]["overall"][str(K)]
    return {"name": name, "fit_s": fit_s, "ndcg": overall["ndcg"],
            "recall": overall["recall"], "users": overall["n_users"],
            "lambda": float(model.regularization_)}


def compare(label: str, train: sp.csr_matrix, test: sp.csr_matrix) -> str:
    per_user = train.nnz / train.shape[0]
    lines = [f"**{label}**: train {train.nnz:,} interactions ({per_user:.1f} per user)\n",
             "| plan | engine | penalty used | fit s | NDCG@10 | Spark vs this row | "
             "Recall@10 |", "|---|---|---|---|---|---|---|"]
    for plan, values in PLANS.items():
        ours = measure("als, the plan's rule", "als",
                       {**SHARED, **values, "num_threads": THREADS}, train, test)
        theirs = measure("spark_als", "spark_als", {**SHARED, **values}, train, test)
        rows = [(ours, f"lambda {ours['lambda']:.1f}")]
        for name, solver in MATCHED.items():
            # Spark's objective in mfengine: weighted lambda at Spark's regParam, same alpha.
            matched = {**SHARED, **values, "regularization": theirs["lambda"],
                       "regularization_scaling": "count", "solver": solver,
                       "num_threads": THREADS}
            row = measure(name, "als", matched, train, test)
            rows.append((row, f"count {row['lambda']:.3f}"))
        rows.append((theirs, f"regParam {theirs['lambda']:.3f}"))
        for row, penalty in rows:
            versus = "" if row is theirs else f"{theirs['ndcg'] / row['ndcg'] - 1:+.1%}"
            lines.append(f"| {plan} | {row['name']} | {penalty} | {row['fit_s']:.1f} | "
                         f"{row['ndcg']:.4f} | {versus} | {row['recall']:.4f} |")
    lines.append(f"\n{ours['users']:,} users evaluated.")
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
        "Same split, factors (64), iterations (15) and seed for every row; each plan's "
        "penalty as mfengine ALS used it (lambda) and the regParam spark_als derived from "
        "it; the matched rows are mfengine ALS on Spark's objective (weighted lambda at the "
        "same regParam and alpha). Spark's fit includes writing the Parquet and collecting "
        "the factors.\n\n"
        + BEFORE_NOTE + "\n\n"
        + "\n\n".join(sections)
    )
    write_section("spark", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
