"""How many iterations the pipeline's full-data ALS fit needs when it starts from the
evaluation model (issue #20): a training run fits the split's train part first (15
iterations, the model its report measures), then the whole dataset version warm-started from
it (`MatrixFactorization.fit(..., initial_item_factors=, initial_user_factors=)`).

    .venv/bin/python benchmarks/warm_start.py [--no-write]

On every shape of benchmarks/shapes.py and benchmarks/pipeline.py's data at 1M events, the
training period (the shape's train matrix) plays
the dataset version and its own per-user temporal split (last 20% of each user's events) the
evaluation's train part: the cold 15-iteration fit of the training period (what the pipeline
published before) against the warm k-iteration fit from the inner model, both scored on the
shape's test split (NDCG@10), with cold k-iteration fits for contrast and three seeds of the
cold 15-iteration fit for the noise. Writes the "warm_start" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import command_line, machine_line, pin_threads, write_section  # noqa: E402

THREADS = 2
pin_threads(THREADS)

import numpy as np  # noqa: E402

import mfengine  # noqa: E402
from benchmarks.quality import load_average, test_ndcg  # noqa: E402
from benchmarks.shapes import Shape, all_shapes  # noqa: E402
from mfengine.evaluation import temporal_split, temporal_split_mask  # noqa: E402
from mfengine.synthetic import generate  # noqa: E402

ITERATIONS = 15
WARM = (1, 2, 3, 5)
SEEDS = (0, 1, 2)


def als(iterations: int, seed: int = 0):
    return mfengine.create("als", factors=64, iterations=iterations, random_state=seed,
                           num_threads=THREADS)


def pipeline_shape() -> Shape:
    """benchmarks/pipeline.py's data at its default size (100k users, 20k items, 1M events,
    popularity exponent 0.9, 8 clusters), per-user temporal split, binary."""
    data = generate(n_users=100_000, n_items=20_000, n_interactions=1_000_000, seed=0)
    users, items, ts = data.user_ids, data.item_ids, data.timestamps
    vals = data.values.astype(np.float64)
    train, test = temporal_split(users, items, ts, vals, shape=(data.n_users, data.n_items))
    keep = ~temporal_split_mask(users, ts, 0.2, items)
    return Shape("syn-pipeline", "benchmarks/pipeline.py's synthetic data, 1M events",
                 "confirm", train, test, (users[keep], items[keep], ts[keep], vals[keep]),
                 "temporal", None, True)


def measure(shape) -> dict:
    users, items, ts, vals = shape.events
    inner = temporal_split(users, items, ts, vals, shape=shape.train.shape,
                           binary=shape.binary).train
    cold = [test_ndcg(als(ITERATIONS, seed).fit(shape.train), shape) for seed in SEEDS]
    started = time.perf_counter()
    base = als(ITERATIONS).fit(inner)
    row = {"cold": cold, "inner_seconds": time.perf_counter() - started, "warm": {},
           "cold_k": {}, "warm_seconds": {}}
    for k in WARM:
        started = time.perf_counter()
        warm = als(k).fit(shape.train, initial_item_factors=base.item_factors_,
                          initial_user_factors=base.user_factors_)
        row["warm_seconds"][k] = time.perf_counter() - started
        row["warm"][k] = test_ndcg(warm, shape)
        row["cold_k"][k] = test_ndcg(als(k).fit(shape.train), shape)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    load_before = load_average()
    rows = {shape.name: measure(shape) for shape in [*all_shapes(), pipeline_shape()]}
    header = ("| shape | cold 15 it (seeds 0/1/2) | "
              + " | ".join(f"warm {k} it" for k in WARM) + " | "
              + " | ".join(f"cold {k} it" for k in WARM) + " |")
    lines = [header, "|" + "---|" * (2 + 2 * len(WARM))]
    worst = {k: 0.0 for k in WARM}
    for name, row in rows.items():
        cold = row["cold"]
        lo, hi = min(cold), max(cold)
        for k in WARM:
            worst[k] = max(worst[k], (cold[0] - row["warm"][k]) / cold[0])
        lines.append(
            f"| {name} | {cold[0]:.4f} ({lo:.4f}-{hi:.4f}) | "
            + " | ".join(f"{row['warm'][k]:.4f}" for k in WARM) + " | "
            + " | ".join(f"{row['cold_k'][k]:.4f}" for k in WARM) + " |")
    noise = max((max(r["cold"]) - min(r["cold"])) / r["cold"][0] for r in rows.values())
    markdown = f"""## Warm-started full fit: iterations after the evaluation model (issue #20)

`{command_line()}` — {machine_line()}; load average before {load_before}, after
{load_average()}

The pipeline fits the evaluation split's train part (15 iterations), then the whole dataset
version warm-started from that model's item and user factors. Here each shape's training
period plays the dataset version and its own per-user temporal split the evaluation's train
part; NDCG@10 on the shape's test split (ALS 64 factors, default penalty), the warm fit against
the cold 15-iteration fit of the same data (seed 0; seeds 0-2 in brackets show the noise) and
against cold fits of as many iterations.

{chr(10).join(lines)}

Largest loss of the warm fit against the cold 15-iteration fit (seed 0) over the shapes:
{", ".join(f"{k} it {worst[k]:+.1%}" for k in WARM)} (positive = worse); the cold fit's own
spread over three seeds is up to {noise:.1%}.
"""
    print(markdown)
    if not args.no_write:
        write_section("warm_start", markdown)


if __name__ == "__main__":
    main()
