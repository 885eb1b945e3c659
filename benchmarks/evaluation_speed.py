"""Speed of the evaluation path: ``evaluate_model`` on ALS and both baselines.

Run from the repository root:  .venv/bin/python benchmarks/evaluation_speed.py

The training pipeline evaluates the model plus the popularity and content baselines on every
run. Case: 100k users x 20k items, 1M synthetic interactions, per-user temporal split (61,591
test users), K = 10, 20, 50, ALS with 64 factors and 15 iterations. Threads are left as the
pipeline leaves them (BLAS and numba on their defaults), unlike the engine benchmark.

Prints one row per model: the time recorded before the compiled top-n paths (commit 1253fdc,
same machine and script), the best of ``--repeats`` runs now, and the share of that spent
recommending (the rest is metrics). JIT compilation is warmed up first (it is cached on disk).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import mfengine  # noqa: E402
from benchmarks.common import machine_line  # noqa: E402
from mfengine.baselines import ContentRecommender, PopularityRecommender, item_tokens  # noqa: E402
from mfengine.evaluation import evaluate_model, recommend_all, temporal_split  # noqa: E402
from mfengine.synthetic import generate  # noqa: E402

KS = (10, 20, 50)
# evaluate_model seconds at commit 1253fdc (dense tiled scores, argpartition top-n, hits per
# K), 2-core AMD EPYC, same case and script.
BEFORE = {"als": 18.5, "popularity": 16.4, "content": 52.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    default_case = (args.users, args.items, args.interactions) == (100_000, 20_000, 1_000_000)

    print(machine_line())
    t0 = time.perf_counter()
    data = generate(
        n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0
    )
    split = temporal_split(
        data.user_ids, data.item_ids, data.timestamps, shape=(data.n_users, data.n_items)
    )
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    als = mfengine.create("als", factors=64, iterations=15).fit(split.train)
    tokens = item_tokens(data.n_items, categories=list(data.item_categories), tags=data.item_tags)
    models = {
        "als": als,
        "popularity": PopularityRecommender().fit(split.train),
        "content": ContentRecommender().fit(split.train, tokens),
    }
    print(
        f"{args.users:,} users x {args.items:,} items, {args.interactions:,} interactions, "
        f"{len(users):,} test users, K={list(KS)} (data + ALS fit {time.perf_counter() - t0:.1f} s)"
    )

    for model in models.values():  # JIT warm-up (compiled once, then cached on disk)
        model.recommend(users[:2], split.train, n=max(KS))

    header = f"{'model':<12}{'before s':>10}{'now s':>9}{'speedup':>9}{'recommend s':>13}"
    print()
    print(header)
    print("-" * len(header))
    for name, model in models.items():
        best = best_rec = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            evaluate_model(model, split.train, split.test, KS)
            best = min(best, time.perf_counter() - start)
            start = time.perf_counter()
            recommend_all(model, split.train, users, max(KS))
            best_rec = min(best_rec, time.perf_counter() - start)
        before = BEFORE[name] if default_case else float("nan")
        speedup = f"{before / best:.1f}x" if default_case else "-"
        before_text = f"{before:.1f}" if default_case else "-"
        print(f"{name:<12}{before_text:>10}{best:>9.2f}{speedup:>9}{best_rec:>13.2f}")


if __name__ == "__main__":
    main()
