"""Why a tuner's validation gain does not carry to the test split (issue 18), by measurement.

Run from the repository root:  .venv/bin/python benchmarks/tuning_transfer.py
Writes the "tuning_transfer" section of benchmarks/RESULTS.md (next to the quality section);
`--no-write` prints only, `--shapes a,b` measures only those shapes (printed only).

Per shape (benchmarks/shapes.py): the configurations that the tuner chose in the quality run
before the fix (`CHOICES`, the search at 12 trials, seed 0) and each single change they make
to the defaults are compared with the defaults, paired per user (each user's NDCG@10 averaged
over seeds 0, 1, 2), under these conditions:

- *validation*: fitted on the validation split's fit part, scored on its held-out positives
  (what the tuner saw);
- *less data*: the same models scored on the TEST positives (train items filtered): the test's
  target with the validation's amount of data;
- *test*: fitted on the whole training part, scored on the test positives (the truth);
- *half A / half B*: two more carve-outs of the training period, each holding out the last 20%
  of one half of the users (a seeded draw) and fitting on everything else: independent users,
  independent held-out events, and 90% of the training period in the fit instead of 80%;
- *earlier band*: a carve-out holding out, for every user, the 20% of the validation fit
  part's events that come last (the band before the validation events), fitting on
  everything else: independent held-out events from an earlier period, 80% in the fit.

Each cell: the mean per-user gain over the defaults in % of the defaults' mean, and its
standard error in the same unit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import command_line, machine_line, pin_threads, write_section  # noqa: E402

pin_threads(2)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mfengine  # noqa: E402
from benchmarks.quality import ALS_FIXED, SEEDS, K, load_average  # noqa: E402
from benchmarks.shapes import all_shapes  # noqa: E402
from mfengine.evaluation import per_user_ranking_metrics, recommend_all  # noqa: E402
from mfengine.keep_rule import paired_gain  # noqa: E402
from mfengine.splits import temporal_split_mask  # noqa: E402
from mfengine.tuning import validation_split  # noqa: E402

#: The tuner's choices in the quality run before the fix (RESULTS.md, 2026-12-01), kept or not.
CHOICES: dict[str, dict[str, Any]] = {
    "syn-ratings": {"alpha": 5.0, "iterations": 25, "regularization": 0.3,
                    "regularization_scaling": "singular_value"},
    "syn-dense-flat": {"alpha": 0.5, "factors": 128, "iterations": 10, "regularization": 0.23,
                       "regularization_scaling": "singular_value"},
    "syn-sparse-skewed": {"alpha": 5.0, "iterations": 25, "regularization": 0.3,
                          "regularization_scaling": "singular_value"},
    "syn-counts": {"alpha": 5.0, "iterations": 15, "regularization": 0.4,
                   "regularization_scaling": "singular_value"},
    "ml-temporal": {"alpha": 1.0, "factors": 16, "iterations": 10, "regularization": 0.06,
                    "regularization_scaling": "singular_value"},
}
CONDITIONS = ("validation", "less data", "test", "half A", "half B", "earlier band")


def carve(events: tuple, shape: tuple[int, int], held_out: np.ndarray,
          threshold: float | None, binary: bool) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(fit, validation) from the training period's events: fit on the events not held out
    (binary, or summed values), validate on the held-out positives not in the fit part."""
    users, items, _, values = events
    keep = ~held_out
    data = np.ones(int(keep.sum())) if binary else values[keep]
    fit = sp.csr_matrix((data.astype(np.float32), (users[keep], items[keep])), shape=shape)
    fit.sum_duplicates()
    if binary:
        fit.data[:] = 1.0
    positive = held_out if threshold is None else held_out & (values >= threshold)
    val = sp.csr_matrix((np.ones(int(positive.sum()), np.float32),
                         (users[positive], items[positive])), shape=shape)
    val.sum_duplicates()
    val.data[:] = 1.0
    val = (val - val.multiply(fit > 0)).tocsr()
    val.eliminate_zeros()
    return fit, val


def more_carve_outs(shape: Any) -> dict[str, tuple[sp.csr_matrix, sp.csr_matrix]]:
    """Half A, half B and the earlier band (module docstring)."""
    users, items, ts, _ = shape.events
    last = temporal_split_mask(users, ts, 0.2, items)
    band = np.zeros_like(last)
    band[~last] = temporal_split_mask(users[~last], ts[~last], 0.2, items[~last])
    half = np.random.default_rng(0).random(shape.train.shape[0]) < 0.5
    masks = {"half A": last & half[users], "half B": last & ~half[users], "earlier band": band}
    return {name: carve(shape.events, shape.train.shape, mask, shape.positive_threshold,
                        shape.binary) for name, mask in masks.items()}


def ndcg(model: Any, seen: sp.csr_matrix, target: sp.csr_matrix) -> np.ndarray:
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    return per_user_ranking_metrics(recommend_all(model, seen, users, K), target[users], K)[
        "ndcg"]


def per_user(params: dict[str, Any], shape: Any, splits: dict[str, tuple]) -> dict[str, Any]:
    """Each condition's per-user NDCG@K, averaged over SEEDS."""
    out: dict[str, list[np.ndarray]] = {c: [] for c in CONDITIONS}
    for seed in SEEDS:
        def fit(matrix: sp.csr_matrix, seed: int = seed) -> Any:
            return mfengine.create("als", **ALS_FIXED, **params, random_state=seed).fit(matrix)

        fit_m, val_m = splits["validation"]
        small = fit(fit_m)
        out["validation"].append(ndcg(small, fit_m, val_m))
        out["less data"].append(ndcg(small, shape.train, shape.test))
        out["test"].append(ndcg(fit(shape.train), shape.train, shape.test))
        for name in ("half A", "half B", "earlier band"):
            part_fit, part_val = splits[name]
            out[name].append(ndcg(fit(part_fit), part_fit, part_val))
    return {c: np.mean(v, axis=0) for c, v in out.items()}


def variants(choice: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The whole choice, then each of its single changes to the defaults."""
    scaling = {"regularization_scaling": "singular_value"}
    defaults = mfengine.create("als").get_params()
    singles = [(f"{k} {v:g}", {k: v, **(scaling if k == "regularization" else {})})
               for k, v in sorted(choice.items())
               if k != "regularization_scaling" and defaults.get(k) != v]
    return [("the choice", dict(choice)), *singles]


def measure(shape: Any) -> list[dict[str, Any]]:
    fit_m, val_m, _ = validation_split(
        *shape.events, shape=shape.train.shape, validation=shape.validation,
        positive_threshold=shape.positive_threshold, binary=shape.binary)
    splits = {"validation": (fit_m, val_m), **more_carve_outs(shape)}
    base = per_user({}, shape, splits)
    rows = []
    for label, params in variants(CHOICES[shape.name]):
        scored = per_user(params, shape, splits)
        row: dict[str, Any] = {"shape": shape.name, "variant": label}
        for condition in CONDITIONS:
            gain = paired_gain(scored[condition], base[condition])
            mean = float(base[condition].mean())
            row[condition] = (100 * gain["mean"] / mean, 100 * gain["se"] / mean)
        rows.append(row)
        print(_row_text(row), flush=True)
    return rows


def _row_text(row: dict[str, Any]) -> str:
    cells = [f"{row[c][0]:+.1f} ± {row[c][1]:.1f}" for c in CONDITIONS]
    return f"| {row['shape']} | {row['variant']} | " + " | ".join(cells) + " |"


def main(names: list[str], write: bool) -> None:
    started = time.perf_counter()
    load = load_average()
    rows = []
    for shape in all_shapes():
        if shape.name in CHOICES and (not names or shape.name in names):
            rows.extend(measure(shape))
    markdown = (
        "### Why the tuner's validation gain did not carry to the test split\n\n"
        f"Command: `{command_line()}` (total {time.perf_counter() - started:.0f} s)  \n"
        f"Machine: {machine_line()}; load average {load} at the start (quality numbers, "
        "not timings)  \n"
        "Protocol in `benchmarks/tuning_transfer.py`'s docstring: NDCG@10 gain over the "
        "defaults in % of the defaults' mean ± its standard error (paired per user, 3 "
        "seeds).\n\n"
        "| shape | configuration | " + " | ".join(CONDITIONS) + " |\n"
        "|---|---|" + "---|" * len(CONDITIONS) + "\n"
        + "\n".join(_row_text(r) for r in rows))
    print(markdown)
    if write and not names:
        write_section("tuning_transfer", markdown)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="", help="comma-separated shape names (printed)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    arguments = parser.parse_args()
    main([n for n in arguments.shapes.split(",") if n], not arguments.no_write)
