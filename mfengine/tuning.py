"""Budgeted hyperparameter search on a validation split carved from the training period.

`tune` receives only the training period's events (never the test set): it splits them again
(per-user temporal by default, or a global time cutoff), fits each candidate on the earlier
part, scores it on the later part with `mfengine.evaluation.ranking_metrics`, and returns the
best configuration with the table of trials. Random search: the strategy's defaults are always
trial 0, then ``n_trials - 1`` distinct random draws from the space. The default budget (12
trials) takes well under a minute on ml-latest-small on 2 cores.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.evaluation import (
    RANKING_KEYS,
    global_time_split,
    ranking_metrics,
    recommend_all,
    temporal_split,
)
from mfengine.report import to_plain

DEFAULT_SPACES: dict[str, dict[str, list[Any]]] = {
    "als": {
        "factors": [16, 32, 64, 128],
        "regularization": [0.05, 0.5, 2.0, 5.0, 10.0, 20.0, 50.0],
        "alpha": [0.5, 1.0, 2.0, 5.0, 10.0, 40.0],
        "iterations": [10, 15, 25],
    },
    "bpr": {
        "factors": [16, 32, 64, 128],
        "regularization": [0.001, 0.01, 0.05],
        "learning_rate": [0.01, 0.05, 0.1],
        "iterations": [50, 100, 200],
    },
    "sgd": {
        "factors": [8, 16, 32, 64, 100],
        "regularization": [0.01, 0.05, 0.1],
        "learning_rate": [0.003, 0.007, 0.015],
        "iterations": [20, 40, 80],
    },
}


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_score: float
    metric: str
    k: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params,
            "best_score": self.best_score,
            "metric": self.metric,
            "k": self.k,
            "trials": self.trials,
            "validation": self.validation,
        }


def _draws(
    space: Mapping[str, Sequence[Any]], n: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Up to n distinct random configurations (fewer if the space is smaller)."""
    names = sorted(space)
    sizes = [len(space[k]) for k in names]
    total = int(np.prod(sizes)) if names else 1
    if total <= n:
        combos = list(itertools.product(*[range(s) for s in sizes]))
    else:
        seen: set[tuple[int, ...]] = set()
        combos = []
        while len(combos) < n:
            combo = tuple(int(rng.integers(s)) for s in sizes)
            if combo not in seen:
                seen.add(combo)
                combos.append(combo)
    return [{k: space[k][i] for k, i in zip(names, c, strict=True)} for c in combos]


def validation_split(
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    shape: tuple[int, int],
    validation: str = "temporal",
    validation_fraction: float = 0.2,
    positive_threshold: float | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, dict[str, Any]]:
    """(fit matrix, validation matrix, description) from the TRAINING period's events only.

    ``"temporal"`` holds out each user's last ``validation_fraction`` of events; ``"global"``
    holds out everything after the (1 - fraction) quantile of the timestamps.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if validation == "temporal":
        fit_m, val_m = temporal_split(
            user_ids, item_ids, ts, values, shape=shape, test_fraction=validation_fraction,
            positive_threshold=positive_threshold,
        )
        return fit_m, val_m, {"kind": "temporal", "fraction": validation_fraction}
    if validation == "global":
        cutoff = int(np.quantile(ts, 1.0 - validation_fraction)) if len(ts) else 0
        fit_m, val_m = global_time_split(
            user_ids, item_ids, ts, values, cutoff=cutoff, shape=shape,
            positive_threshold=positive_threshold,
        )
        return fit_m, val_m, {"kind": "global", "cutoff": cutoff}
    raise ValueError("validation must be 'temporal' or 'global'")


def validation_metrics(
    factory: Callable[..., Any], strategy: str, params: Mapping[str, Any],
    fit_matrix: sp.csr_matrix, validation_matrix: sp.csr_matrix, k: int,
) -> dict[str, float]:
    """Fit ``strategy`` with ``params`` on ``fit_matrix``; its ranking metrics at ``k`` on the
    users with validation positives (train items filtered)."""
    users = np.flatnonzero(np.diff(validation_matrix.indptr) > 0)
    model = factory(strategy, **params).fit(fit_matrix)
    recommended = recommend_all(model, fit_matrix, users, k)
    scores = ranking_metrics(recommended, validation_matrix, k, users=users)
    return {m: float(scores[m]) for m in RANKING_KEYS}


def _trial(
    factory: Callable[..., Any], strategy: str, number: int, params: dict[str, Any],
    base: dict[str, Any], fit_m: sp.csr_matrix, val_m: sp.csr_matrix, metric: str, k: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    row: dict[str, Any] = {"trial": number, "params": to_plain(dict(params))}
    try:
        row["metrics"] = validation_metrics(factory, strategy, {**base, **params}, fit_m, val_m,
                                            k)
        row["score"] = row["metrics"][metric]
    except _TRIAL_ERRORS as exc:
        # A diverging configuration is a bad trial, not a failed search.
        row["score"] = float("-inf")
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["fit_seconds"] = time.perf_counter() - t0
    return row


_TRIAL_ERRORS = (FloatingPointError, ValueError, ArithmeticError)


def _seed_scores(
    factory: Callable[..., Any], strategy: str, params: dict[str, Any], first: float,
    seeds: list[int], fit_m: sp.csr_matrix, val_m: sp.csr_matrix, metric: str, k: int,
) -> list[float]:
    """``first`` (the trial's own score) and the scores of refits with ``seeds``."""
    scores = [first]
    for random_state in seeds:
        try:
            scores.append(validation_metrics(factory, strategy, {**params,
                          "random_state": random_state}, fit_m, val_m, k)[metric])
        except _TRIAL_ERRORS:
            scores.append(float("-inf"))
    return scores


def search(
    strategy: str,
    fit_matrix: sp.csr_matrix,
    validation_matrix: sp.csr_matrix,
    *,
    space: Mapping[str, Sequence[Any]] | None = None,
    n_trials: int = 12,
    metric: str = "ndcg",
    k: int = 10,
    base_params: Mapping[str, Any] | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
    confirm_top: int = 3,
    confirm_seeds: int = 1,
    factory: Callable[..., Any] | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> TuningResult:
    """Random search over ``space`` (default: DEFAULT_SPACES[strategy]) on prepared matrices:
    fit on ``fit_matrix``, score on ``validation_matrix`` (binary held-out positives).

    ``base_params`` are fixed for every trial (e.g. random_state, num_threads); trial 0 uses
    them alone (the defaults). Trials stop early once ``time_budget_s`` is spent (at least one
    runs). The ``confirm_top`` best trials are refit with ``confirm_seeds`` other seeds and
    scored by their mean (a trial's ``score`` is then that mean, its ``confirm_scores`` the
    parts). ``factory(name, **params)`` builds a model (default ``mfengine.create``);
    ``callback(trial_row)`` runs after each trial.
    """
    if factory is None:
        import mfengine

        factory = mfengine.create
    if metric not in RANKING_KEYS:
        raise ValueError(f"unknown metric {metric!r}")
    space = dict(DEFAULT_SPACES.get(strategy, {}) if space is None else space)
    rng = np.random.default_rng(seed)
    base = dict(base_params or {})
    candidates = ([{}] + _draws(space, max(n_trials - 1, 0), rng))[:n_trials]
    trials: list[dict[str, Any]] = []
    start_all = time.perf_counter()
    for number, params in enumerate(candidates):
        if trials and time_budget_s is not None and time.perf_counter() - start_all > time_budget_s:
            break
        trials.append(_trial(factory, strategy, number, params, base, fit_matrix,
                             validation_matrix, metric, k))
        if callback is not None:
            callback(trials[-1])
    # Confirmation: one validation fit is noisy (init seed), so the leaders are refit with
    # other seeds and ranked by their mean score.
    seeds = [seed + 1000 * extra for extra in range(1, confirm_seeds + 1)]
    leaders = sorted(trials, key=lambda r: (-r["score"], r["trial"]))[: max(confirm_top, 0)]
    for row in leaders:
        if np.isfinite(row["score"]):
            row["confirm_scores"] = _seed_scores(
                factory, strategy, {**base, **row["params"]}, row["score"], seeds, fit_matrix,
                validation_matrix, metric, k)
            row["score"] = float(np.mean(row["confirm_scores"]))
    best = max(trials, key=lambda r: (r["score"], -r["trial"]))
    users = np.flatnonzero(np.diff(validation_matrix.indptr) > 0)
    return TuningResult(
        best_params={**{k: to_plain(v) for k, v in base.items()}, **best["params"]},
        best_score=best["score"],
        metric=metric,
        k=k,
        trials=trials,
        validation={"fit_interactions": int(fit_matrix.nnz),
                    "validation_positives": int(validation_matrix.nnz),
                    "validation_users": int(len(users))},
    )


def tune(
    strategy: str,
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    shape: tuple[int, int],
    validation: str = "temporal",
    validation_fraction: float = 0.2,
    positive_threshold: float | None = None,
    **search_options: Any,
) -> TuningResult:
    """:func:`search` on a validation split (:func:`validation_split`) of the events given,
    which must be the TRAINING period only (row/column indices, unix seconds)."""
    fit_m, val_m, info = validation_split(
        user_ids, item_ids, timestamps, values, shape=shape, validation=validation,
        validation_fraction=validation_fraction, positive_threshold=positive_threshold)
    result = search(strategy, fit_m, val_m, **search_options)
    result.validation = {**info, **result.validation}
    return result


#: Kept only when the chosen configuration beats the defaults on validation by more than the
#: larger of twice the defaults' standard deviation over seeds and this share of their score.
MIN_RELATIVE_GAIN = 0.01


def tune_against_defaults(
    strategy: str,
    fit_matrix: sp.csr_matrix,
    validation_matrix: sp.csr_matrix,
    *,
    defaults: Mapping[str, Any],
    seeds: int = 3,
    min_relative_gain: float = MIN_RELATIVE_GAIN,
    factory: Callable[..., Any] | None = None,
    **search_options: Any,
) -> dict[str, Any]:
    """A search whose choice replaces ``defaults`` only when it beats them by more than noise.

    The best trial and the defaults are each scored over ``seeds`` fits (the search's own
    seed, then the confirmation seeds, the same for both: a paired comparison). Noise is the
    sample standard deviation of the defaults' scores; the choice is kept when its mean gain
    over the defaults' mean exceeds max(2 x that deviation, ``min_relative_gain`` x the
    defaults' mean). Returns a plain (JSON-ready) dict: the trials, chosen vs defaults, gain,
    noise rule, whether kept and the ``hyperparameters`` to train with.
    """
    if factory is None:
        import mfengine

        factory = mfengine.create
    started = time.perf_counter()
    defaults = dict(defaults)
    result = search(strategy, fit_matrix, validation_matrix, base_params=defaults,
                    confirm_top=1, confirm_seeds=seeds - 1, factory=factory, **search_options)
    best = max(result.trials, key=lambda r: (r["score"], -r["trial"]))
    first = result.trials[0]
    default_scores = first.get("confirm_scores")
    if default_scores is None:
        seed = int(search_options.get("seed", 0))
        default_scores = _seed_scores(
            factory, strategy, defaults, first["score"],
            [seed + 1000 * extra for extra in range(1, seeds)], fit_matrix, validation_matrix,
            result.metric, result.k)
    finite = bool(np.all(np.isfinite(default_scores)))
    default_mean = float(np.mean(default_scores)) if finite else float("-inf")
    noise = float(np.std(default_scores, ddof=1)) if finite and len(default_scores) > 1 else 0.0
    margin = max(2 * noise, min_relative_gain * abs(default_mean)) if finite else 0.0
    gain = best["score"] - default_mean
    kept = best["trial"] != 0 and bool(np.isfinite(best["score"])) and gain > margin
    chosen = {**defaults, **best["params"]}
    return to_plain({
        "strategy": strategy,
        "metric": f"{result.metric}@{result.k}",
        "validation": result.validation,
        "trials": result.trials,
        "defaults": {"params": defaults, "score": default_mean, "scores": default_scores},
        "chosen": {"trial": best["trial"], "params": chosen, "score": best["score"],
                   "scores": best.get("confirm_scores", [best["score"]])},
        "gain": gain,
        "relative_gain": gain / default_mean if finite and default_mean else None,
        "noise": {"std": noise, "margin": margin, "seeds": seeds,
                  "rule": f"kept when gain > max(2 x std of the defaults over {seeds} seeds, "
                          f"{min_relative_gain:.0%} of the defaults' score)"},
        "kept": kept,
        "hyperparameters": chosen if kept else defaults,
        "seconds": time.perf_counter() - started,
    })
