"""Recommendation quality on several data shapes, side by side with implicit (BENCHMARK.md).

Run from the repository root:  .venv/bin/python benchmarks/quality.py
Writes the "quality", "quality_pooled" and "fold_in" sections of benchmarks/RESULTS.md;
`--fold-in` runs only the last: fold-in time per user (50 items) at 100k items, BPR next to
ALS.

Shapes (benchmarks/shapes.py): ml-latest-small under the per-user temporal split and a global
time cutoff (80% quantile), and four synthetic sets of different density, popularity skew and
value scale. Per shape: popularity; implicit's ALS (64 factors, regularization 0.05, 15
iterations, the best of alpha {1, 10, 40} chosen on the test set itself, which favours it;
then that alpha over 3 seeds); mfengine ALS at its defaults over 3 seeds; and
`mfengine.keep_rule.tune_against_defaults` (12 trials with successive halving, validation carved
from the training period by the same protocol as the test split, the keep rule's second test
on `mfengine.tuning.second_carve_out`), its choice scored on the test set over 3 seeds whether
it was kept or not, to show whether a validation gain carries.
mfengine's fits skip the per-iteration training loss (ALS_FIXED). Each shape's row ends with
the seconds each part took.

Pooled shapes (benchmarks/shapes.py `pooled_shapes`): ml-global's protocol at the 70%, 80%
and 90% time-quantile cutoffs, each cutoff measured as a shape of its own, then reported over
all their test users together ("quality_pooled"): 28 test users at one cutoff cannot tell
mfengine and implicit apart.

`--shapes ml-global,syn-counts` measures only those shapes and `--trials N` changes the
tuner's budget (both print and leave the quality section alone: for development; a pooled
shape named in `--shapes`, e.g. `--shapes ml-global-pooled`, still writes its own section at
the default budget); `--no-fold-in` skips the fold-in timing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    command_line,
    machine_line,
    pin_threads,
    write_section,
)

THREADS = 2
pin_threads(THREADS)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mfengine  # noqa: E402
from benchmarks.shapes import PooledShape, all_shapes, pooled_shapes  # noqa: E402
from mfengine.als import AUTO_REGULARIZATION  # noqa: E402
from mfengine.baselines import PopularityRecommender  # noqa: E402
from mfengine.evaluation import per_user_ranking_metrics, recommend_all  # noqa: E402
from mfengine.keep_rule import paired_gain, tune_against_defaults  # noqa: E402
from mfengine.tuning import second_carve_out, validation_split  # noqa: E402

SEED = 0
K = 10
IMPLICIT_ALPHAS = (1.0, 10.0, 40.0)


class ImplicitAdapter:
    """implicit's recommend behind mfengine's signature (implicit wants the users' rows)."""

    name = "implicit-als"

    def __init__(self, model: Any) -> None:
        self.model = model

    def recommend(self, user_ids, user_items, n=10, filter_seen=True, items=None, exclude=None):
        users = np.asarray(user_ids)
        ids, scores = self.model.recommend(
            users, sp.csr_matrix(user_items[users]), N=n, filter_already_liked_items=filter_seen
        )
        return ids, scores


def _fit(name: str, params: dict[str, Any], train: sp.csr_matrix) -> tuple[Any, float]:
    t0 = time.perf_counter()
    model = mfengine.create(name, **params).fit(train)
    return model, time.perf_counter() - t0


def load_average() -> str:
    """The 1/5/15-minute load averages: other helpers share this machine's cores."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def test_users(shape: Any) -> np.ndarray:
    """The shape's test users (matrix rows with a test positive), in user order."""
    return np.flatnonzero(np.diff(shape.test.indptr) > 0)


def test_ndcg_per_user(model: Any, shape: Any) -> np.ndarray:
    """NDCG@K of each of ``test_users(shape)``, train items filtered."""
    users = test_users(shape)
    recommended = recommend_all(model, shape.train, users, K)
    return per_user_ranking_metrics(recommended, shape.test[users], K)["ndcg"]


def test_ndcg(model: Any, shape: Any) -> float:
    """NDCG@K on the shape's test users, train items filtered."""
    return float(test_ndcg_per_user(model, shape).mean())


def implicit_fit(alpha: float, train: sp.csr_matrix, seed: int = SEED) -> Any:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        peer = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15,
                                       alpha=alpha, random_state=seed, num_threads=THREADS)
        peer.fit(train, show_progress=False)
    return ImplicitAdapter(peer)


def implicit_best(shape: Any) -> dict[str, Any]:
    """implicit's ALS at alpha 1, 10 and 40 (seed 0); the best on the test set itself."""
    per_user = {alpha: test_ndcg_per_user(implicit_fit(alpha, shape.train), shape)
                for alpha in IMPLICIT_ALPHAS}
    scores = {alpha: float(values.mean()) for alpha, values in per_user.items()}
    alpha = max(scores, key=scores.__getitem__)
    return {"alpha": alpha, "ndcg": scores[alpha], "by_alpha": scores,
            "per_user": per_user[alpha]}


SEEDS = (0, 1, 2)
TUNING_TRIALS = 12
#: Fixed in every mfengine fit here: the per-iteration training loss does not change the
#: model and cost ~40% of an ALS fit (nobody reads it in this benchmark).
ALS_FIXED = {"calculate_training_loss": False}


def seed_ndcg(make: Any, shape: Any) -> tuple[list[float], np.ndarray]:
    """Test NDCG@K of ``make(seed)`` for each of SEEDS, and each test user's NDCG@K averaged
    over the seeds (for paired comparisons)."""
    per_user = [test_ndcg_per_user(make(seed), shape) for seed in SEEDS]
    return [float(values.mean()) for values in per_user], np.mean(per_user, axis=0)


def measure_shape(shape: Any, trials: int = TUNING_TRIALS) -> dict[str, Any]:
    """Every number of one shape's row (see the module docstring), and the seconds each part
    took (``seconds``)."""
    out: dict[str, Any] = {"shape": shape}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    out["popularity"] = test_ndcg(PopularityRecommender().fit(shape.train), shape)
    peer = implicit_best(shape)
    out["implicit_alpha"] = peer["alpha"]
    others = [test_ndcg_per_user(implicit_fit(peer["alpha"], shape.train, seed), shape)
              for seed in SEEDS[1:]]
    out["implicit"] = [peer["ndcg"]] + [float(values.mean()) for values in others]
    users: dict[str, np.ndarray] = {"implicit": np.mean([peer["per_user"], *others], axis=0)}
    seconds["implicit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["defaults"], users["defaults"] = seed_ndcg(
        lambda seed: mfengine.create("als", **ALS_FIXED, random_state=seed).fit(shape.train),
        shape)
    seconds["defaults"] = time.perf_counter() - t0
    protocol = {"shape": shape.train.shape, "validation": shape.validation,
                "positive_threshold": shape.positive_threshold, "binary": shape.binary}
    fit_m, val_m, _ = validation_split(*shape.events, **protocol)
    t0 = time.perf_counter()
    section = tune_against_defaults("als", fit_m, val_m,
                                    defaults={**ALS_FIXED, "random_state": SEED},
                                    carve_out=second_carve_out(*shape.events, **protocol),
                                    n_trials=trials, seed=SEED, metric="ndcg", k=K)
    out["tuning_s"] = seconds["tuning"] = time.perf_counter() - t0
    out["tuning"] = section
    chosen = {k: v for k, v in section["chosen"]["params"].items()
              if k != "random_state" and k not in ALS_FIXED}
    out["chosen_params"] = chosen
    t0 = time.perf_counter()
    # The defaults' own test fits stand for a choice that is the defaults.
    out["chosen"], users["chosen"] = (out["defaults"], users["defaults"]) if not chosen else (
        seed_ndcg(lambda seed: mfengine.create(
            "als", **ALS_FIXED, **chosen, random_state=seed).fit(shape.train), shape))
    seconds["choice on test"] = time.perf_counter() - t0
    out["trained"] = out["chosen"] if section["kept"] else out["defaults"]
    users["trained"] = users["chosen"] if section["kept"] else users["defaults"]
    out["users"] = users
    out["seconds"] = seconds
    return out


def _ratio(values: list[float], peer: list[float]) -> float:
    return float(np.mean(values) / np.mean(peer))


def _params_text(params: dict[str, Any]) -> str:
    short = {"regularization": "reg", "regularization_scaling": "scaling",
             "iterations": "iter"}
    return ", ".join(f"{short.get(k, k)} {v}" for k, v in sorted(params.items())) or "defaults"


def quality_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | role | popularity | implicit best alpha (3 seeds) | mfengine ALS defaults "
        "(3 seeds) | defaults / implicit | tuner's choice | validation gain | second "
        "carve-out gain | test gain of the choice | kept | as trained / implicit | tuning "
        "fits, s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        section = r["tuning"]
        test_gain = float(np.mean(r["chosen"]) / np.mean(r["defaults"]) - 1.0)
        relative = section["relative_gain"]
        lines.append(
            f"| {r['shape'].name} | {r['shape'].role} | {r['popularity']:.4f} | "
            f"{np.mean(r['implicit']):.4f} +- {np.std(r['implicit']):.4f} "
            f"(alpha {r['implicit_alpha']:g}) | "
            f"{np.mean(r['defaults']):.4f} +- {np.std(r['defaults']):.4f} | "
            f"**{_ratio(r['defaults'], r['implicit']):.3f}x** | "
            f"{_params_text(r['chosen_params'])} | "
            f"{'n/a' if relative is None else f'{relative:+.1%}'} | "
            f"{_second_text(section['confirmation'])} | {test_gain:+.1%} | "
            f"{'yes' if section['kept'] else 'no'} | "
            f"**{_ratio(r['trained'], r['implicit']):.3f}x** | "
            f"{section['fits']}, {r['tuning_s']:.0f} |")
    return "\n".join(lines)


def _second_text(confirmation: dict[str, Any] | None) -> str:
    """The second carve-out's gain (relative, +- its standard error), or why it did not run."""
    if not confirmation or confirmation.get("skipped"):
        return "not run"
    if confirmation.get("error") or confirmation.get("relative_gain") is None:
        return "failed"
    relative = confirmation["relative_gain"]
    se = relative * confirmation["gain_se"] / confirmation["gain"] if confirmation["gain"] else 0
    return f"{relative:+.1%} +- {abs(se):.1%}"


def goals(results: list[dict[str, Any]]) -> str:
    """The issue's bars, shape by shape: defaults >= 1.0x implicit; tuned >= 1.05x (per-user
    splits) or >= 1.0x (global cutoff); tuned never below defaults by more than noise."""
    lines = []
    for r in results:
        shape = r["shape"]
        defaults = _ratio(r["defaults"], r["implicit"])
        trained = _ratio(r["trained"], r["implicit"])
        bar = 1.0 if shape.validation == "global" else 1.05
        noise = 2 * float(np.std(r["defaults"], ddof=1)) / float(np.mean(r["defaults"]))
        drop = float(np.mean(r["trained"]) / np.mean(r["defaults"]) - 1.0)
        users = r["users"]
        gap = paired_gain(users["defaults"], users["implicit"])
        change = paired_gain(users["trained"], users["defaults"])
        lines.append(
            f"- {shape.name}: defaults {defaults:.3f}x ({_verdict(defaults >= 1.0, defaults, 1.0)}"
            f"; per test user, defaults - implicit {gap['mean']:+.4f} +- {gap['se']:.4f} "
            f"standard error over {gap['n_users']:,} {r.get('counted_as', 'users')}); "
            f"tuned {trained:.3f}x vs "
            f"{bar:.2f}x ({_verdict(trained >= bar, trained, bar)}); tuned vs defaults "
            f"{drop:+.1%} (noise: 2 std over 3 seeds = {noise:.1%}; "
            f"{'within' if drop >= -noise else 'BELOW'}; per test user "
            f"{change['mean']:+.4f} +- {change['se']:.4f})")
    return "\n".join(lines)


def _verdict(met: bool, value: float, bar: float) -> str:
    return "met" if met else f"short by {bar - value:.3f}"


def _seconds_text(seconds: dict[str, float]) -> str:
    return ", ".join(f"{part} {value:.0f} s" for part, value in seconds.items())


def _run_header(total: float, load_before: str) -> str:
    return (
        f"Command: `{command_line()}` (total {total:.0f} s)  \n"
        f"Machine: {machine_line()}  \n"
        f"Load average (1/5/15 min) at the start: {load_before}, at the end: "
        f"{load_average()} (other helpers share the 2 cores: times are rough, NDCG is not "
        "affected)  \n")


def _shape_lines(results: list[dict[str, Any]]) -> str:
    return "\n".join(f"- {r['shape'].name}: {r['shape'].description}; "
                     f"{r['shape'].train.nnz:,} train interactions, "
                     f"{int((np.diff(r['shape'].test.indptr) > 0).sum()):,} test users"
                     for r in results)


def quality_markdown(results: list[dict[str, Any]], header: str) -> str:
    return (
        "## Quality on several data shapes, side by side with implicit\n\n"
        + header
        + "NDCG@10 per BENCHMARK.md (`mfengine.evaluation`), train items excluded. implicit "
        "0.7 ALS: 64 factors, regularization 0.05, 15 iterations, alpha 1/10/40 picked on "
        "the test set (favours it), then 3 seeds. mfengine ALS defaults: 64 factors, 15 "
        "iterations, alpha 1, regularization \"auto\" "
        f"({AUTO_REGULARIZATION['singular_value']:g} x the largest singular value of the "
        "confidence matrix; see the als_defaults section). Tuning: "
        "`tune_against_defaults`, 12 random-search trials of `DEFAULT_SPACES['als']` with "
        "successive halving (3 / 5 / 15 iterations), the best confirmed over 3 seeds, kept "
        "only when its mean per-user validation gain over the defaults (paired, each user "
        "averaged over the 3 seeds) exceeds 2 standard errors, and does so again on a "
        "second carve-out on which no trial was chosen (`second_carve_out`: the events "
        "just before the validation ones held out, everything else fitted; not run when "
        "the first test fails); the "
        "validation split is carved from the training period by the test split's own "
        "protocol. *test gain of the choice*: the chosen configuration on the test set (3 "
        "seeds) against the defaults, kept or not. *as trained*: what a plan with "
        "`training.tune` would serve. The ml-global split evaluates few users, so its "
        "numbers are noisy: the quality_pooled section below pools it with its neighbouring "
        "cutoffs.\n\n"
        + _shape_lines(results)
        + "\n\n" + quality_table(results)
        + "\n\nGoals (issue 18):\n\n" + goals(results)
        + "\n\nTime per shape: "
        + "; ".join(f"{r['shape'].name}: {_seconds_text(r['seconds'])}" for r in results)
        + "."
    )


def pool(pooled: PooledShape, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """``measure_shape``'s results of ``pooled``'s parts as one result over all their test
    users (the keys ``goals`` reads): per-user arrays concatenated, so a user who is a test
    user at two cutoffs counts twice; each seed's mean NDCG over the pooled users. Also each
    row's user (``user_ids``, the matrices' row), for a standard error clustered by user."""
    sizes = [len(r["users"]["defaults"]) for r in parts]
    out: dict[str, Any] = {
        "shape": pooled, "counted_as": "user-cutoffs",
        "users": {key: np.concatenate([r["users"][key] for r in parts])
                  for key in parts[0]["users"]},
        "user_ids": np.concatenate([test_users(r["shape"]) for r in parts]),
    }
    for key in ("implicit", "defaults", "trained"):
        # A part's seed mean is the mean over its users: weighting by users pools them.
        out[key] = [float(v) for v in np.average([r[key] for r in parts], axis=0,
                                                  weights=sizes)]
    return out


def clustered_se(diff: np.ndarray, clusters: np.ndarray) -> float:
    """Standard error of ``diff``'s mean when the rows of one cluster (one user at several
    cutoffs, with overlapping test periods) are not independent: each cluster's summed
    deviations as one draw (the sandwich estimator, with its G / (G - 1) correction)."""
    deviations = np.asarray(diff, dtype=np.float64) - float(np.mean(diff))
    _, cluster = np.unique(clusters, return_inverse=True)
    sums = np.bincount(cluster, weights=deviations)
    if sums.size < 2:
        return 0.0
    return float(np.sqrt(sums.size / (sums.size - 1) * np.sum(sums ** 2)) / deviations.size)


def _significance(mean: float, se: float) -> str:
    """Whether a paired difference is clear of 2 of its standard errors."""
    if mean == 0.0:
        return "no difference"
    if abs(mean) <= 2 * se:
        return f"{abs(mean) / se:.1f} standard errors, within 2 of no difference"
    return f"{abs(mean) / se:.1f} standard errors {'above' if mean > 0 else 'below'} zero"


def pooled_markdown(pooled: PooledShape, parts: list[dict[str, Any]], header: str) -> str:
    result = pool(pooled, parts)
    users = result["users"]
    n_users = len(np.unique(result["user_ids"]))
    lines = []
    for better, worse in (("defaults", "implicit"), ("trained", "implicit"),
                          ("trained", "defaults")):
        gain = paired_gain(users[better], users[worse])
        clustered = clustered_se(users[better] - users[worse], result["user_ids"])
        lines.append(
            f"- {better} vs {worse}: {_ratio(result[better], result[worse]):.3f}x "
            f"({np.mean(result[better]):.4f} vs {np.mean(result[worse]):.4f}); per "
            f"user-cutoff difference {gain['mean']:+.4f} +- {gain['se']:.4f} standard error, "
            f"clustered by user +- {clustered:.4f}: {_significance(gain['mean'], clustered)}")
    return (
        f"### {pooled.name}: {pooled.description}\n\n"
        + header
        + "ml-global alone has too few test users to tell mfengine and implicit apart, so "
        "its protocol runs at the neighbouring cutoffs too. Each cutoff is its own shape "
        "measured by `measure_shape` exactly as in the quality table (implicit's alpha "
        "picked on that cutoff's test set, the tuner's validation carved from that cutoff's "
        "training period, 3 seeds); the 80% cutoff is ml-global itself. Pooled: each test "
        "user's NDCG@10 averaged over the 3 seeds, the users of every cutoff taken together, "
        "ratio of the pooled means. A user who is a test user at two or three cutoffs counts "
        f"once per cutoff ({len(users['defaults'])} user-cutoffs, {n_users} distinct users); "
        "their test periods overlap (the 70% cutoff's contains the later ones), so those rows "
        "are not independent: the standard error is given per user-cutoff (as if they were) "
        "and clustered by user.\n\n"
        + _shape_lines(parts)
        + "\n\n" + quality_table(parts)
        + f"\n\nPooled over the three cutoffs ({len(users['defaults'])} user-cutoffs):\n\n"
        + "\n".join(lines)
        + "\n\nGoals (issue 18), each cutoff and pooled:\n\n" + goals([*parts, result])
        + "\n\nTime per cutoff: "
        + "; ".join(f"{r['shape'].name}: {_seconds_text(r['seconds'])}" for r in parts)
        + "."
    )


def main(names: list[str] | None = None, trials: int = TUNING_TRIALS) -> None:
    """Every shape and pooled shape (or only ``names``: the quality section printed, not
    written to RESULTS.md; a pooled shape's own section is written whenever it is measured
    with the default trials, since it does not depend on the other shapes)."""
    started = time.perf_counter()
    load_before = load_average()
    shapes = [shape for shape in all_shapes() if not names or shape.name in names]
    pooled = [each for each in pooled_shapes() if not names or each.name in names]
    measured: dict[str, dict[str, Any]] = {}
    # ml-global is both a shape and a pooled part: measured once.
    for shape in [*shapes, *(part for each in pooled for part in each.parts)]:
        if shape.name in measured:
            continue
        measured[shape.name] = measure_shape(shape, trials)
        print(shape.name, f"{time.perf_counter() - started:.0f} s "
              f"({_seconds_text(measured[shape.name]['seconds'])})", flush=True)
    header = _run_header(time.perf_counter() - started, load_before)
    write = trials == TUNING_TRIALS
    if shapes:
        markdown = quality_markdown([measured[shape.name] for shape in shapes], header)
        if names or not write:
            print("(a subset: the quality section of RESULTS.md not written)")
        else:
            write_section("quality", markdown)
        print(markdown)
    for each in pooled:
        markdown = pooled_markdown(each, [measured[part.name] for part in each.parts], header)
        if write:
            write_section("quality_pooled", markdown)
        print(markdown)


FOLD_IN_ITEMS = 100_000
FOLD_IN_POSITIVES = 50
FOLD_IN_USERS = 200


def fold_in_timing() -> None:
    """Fold-in time of a 50-item user in a 100k-item catalogue, BPR next to ALS (serving and
    the promotion gate fold users in per request). Both fitted on a synthetic set with 100k
    items at 64 factors; each user's 50 items are drawn by item popularity (seeded)."""
    from mfengine.synthetic import generate

    started = time.perf_counter()
    data = generate(n_users=20_000, n_items=FOLD_IN_ITEMS, n_interactions=600_000,
                    n_clusters=50, seed=SEED)
    matrix = data.to_csr()
    popularity = np.asarray((matrix > 0).sum(axis=0)).ravel() + 1.0
    rng = np.random.default_rng(SEED)
    users = [np.sort(rng.choice(FOLD_IN_ITEMS, FOLD_IN_POSITIVES, replace=False,
                                p=popularity / popularity.sum()))
             for _ in range(FOLD_IN_USERS)]
    rows = []
    for strategy, params in (("als", ALS_FIXED), ("bpr", {"iterations": 30})):
        model, fit_s = _fit(strategy, {"factors": 64, "random_state": SEED, **params}, matrix)
        first = time.perf_counter()
        model.fold_in(users[0])  # ALS computes its cached Gram matrix here
        first_ms = (time.perf_counter() - first) * 1e3
        times = []
        for ids in users:
            t0 = time.perf_counter()
            model.fold_in(ids)
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append(f"| {strategy} | {np.median(times):.2f} | {np.percentile(times, 90):.2f} | "
                    f"{max(times):.2f} | {first_ms:.2f} | {fit_s:.1f} |")
    bpr_median = float(rows[1].split("|")[2])
    verdict = "**met**" if bpr_median <= 5.0 else "**not met**"
    markdown = (
        "## Fold-in time at 100k items\n\n"
        f"Command: `{command_line()}` (total {time.perf_counter() - started:.0f} s)  \n"
        f"Machine: {machine_line()}  \n"
        f"Synthetic data (mfengine.synthetic, 20,000 users x {FOLD_IN_ITEMS:,} items, 600k "
        f"events), 64 factors; {FOLD_IN_USERS} users of {FOLD_IN_POSITIVES} items each drawn "
        "by item popularity; time per `fold_in` call in ms (first call separately: ALS builds "
        "its cached Gram matrix there). BPR samples 512 negatives per call "
        "(`mfengine.bpr.FOLD_IN_NEGATIVES`, seeded by the item ids); before it used every "
        "negative, a dense positives x negatives matrix per Newton step (4.1 s measured for "
        "this case in issue 18).\n\n"
        "| strategy | median ms | p90 ms | max ms | first call ms | fit s |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Goal: BPR fold-in <= 5 ms for a 50-item user at 100k items: {bpr_median:.2f} ms "
        f"{verdict}."
    )
    write_section("fold_in", markdown)
    print(markdown)


def _arguments() -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-in", action="store_true", help="only the fold-in timing")
    parser.add_argument("--shapes", default="", help="comma-separated shape names: only "
                        "those, printed and not written (for development); a pooled shape's "
                        "own section is written")
    parser.add_argument("--trials", type=int, default=TUNING_TRIALS,
                        help="the tuner's trial budget (not written unless the default)")
    parser.add_argument("--no-fold-in", action="store_true", help="skip the fold-in timing")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    if not arguments.fold_in:
        main([n for n in arguments.shapes.split(",") if n], arguments.trials)
    if not arguments.no_fold_in:
        fold_in_timing()
