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


def tune(
    strategy: str,
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    shape: tuple[int, int],
    space: Mapping[str, Sequence[Any]] | None = None,
    n_trials: int = 12,
    metric: str = "ndcg",
    k: int = 10,
    validation: str = "temporal",
    validation_fraction: float = 0.2,
    positive_threshold: float | None = None,
    base_params: Mapping[str, Any] | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
    confirm_top: int = 3,
    confirm_seeds: int = 1,
    factory: Callable[..., Any] | None = None,
) -> TuningResult:
    """Random search over ``space`` (default: DEFAULT_SPACES[strategy]).

    The events given must be the TRAINING period only (row/column indices, unix seconds).
    ``validation="temporal"`` holds out each user's last ``validation_fraction`` of events;
    ``"global"`` holds out everything after the (1 - fraction) quantile of the timestamps.
    ``base_params`` are fixed for every trial (e.g. random_state, num_threads); trial 0 uses
    them with the strategy's defaults. Trials stop early once ``time_budget_s`` is spent.
    The ``confirm_top`` best trials are refit with ``confirm_seeds`` other seeds and scored by
    their mean (a trial's ``score`` is then that mean, its ``confirm_scores`` the parts).
    ``factory(name, **params)`` builds a model (default ``mfengine.create``).
    """
    if factory is None:
        import mfengine

        factory = mfengine.create
    if metric not in RANKING_KEYS:
        raise ValueError(f"unknown metric {metric!r}")
    space = dict(DEFAULT_SPACES.get(strategy, {}) if space is None else space)
    ts = np.asarray(timestamps, dtype=np.int64)
    if validation == "temporal":
        fit_m, val_m = temporal_split(
            user_ids, item_ids, ts, values, shape=shape, test_fraction=validation_fraction,
            positive_threshold=positive_threshold,
        )
        val_info: dict[str, Any] = {"kind": "temporal", "fraction": validation_fraction}
    elif validation == "global":
        cutoff = int(np.quantile(ts, 1.0 - validation_fraction)) if len(ts) else 0
        fit_m, val_m = global_time_split(
            user_ids, item_ids, ts, values, cutoff=cutoff, shape=shape,
            positive_threshold=positive_threshold,
        )
        val_info = {"kind": "global", "cutoff": cutoff}
    else:
        raise ValueError("validation must be 'temporal' or 'global'")
    val_users = np.flatnonzero(np.diff(val_m.indptr) > 0)
    val_info.update(
        {"fit_interactions": int(fit_m.nnz), "validation_positives": int(val_m.nnz),
         "validation_users": int(len(val_users))}
    )

    rng = np.random.default_rng(seed)
    base = dict(base_params or {})
    candidates = [{}] + _draws(space, max(n_trials - 1, 0), rng)
    candidates = candidates[:n_trials]
    trials: list[dict[str, Any]] = []
    start_all = time.perf_counter()
    for number, params in enumerate(candidates):
        # At least one trial always runs, so there is always a best configuration.
        if trials and time_budget_s is not None and time.perf_counter() - start_all > time_budget_s:
            break
        full = {**base, **params}
        t0 = time.perf_counter()
        row: dict[str, Any] = {"trial": number, "params": to_plain(dict(params))}
        try:
            model = factory(strategy, **full).fit(fit_m)
            row["fit_seconds"] = time.perf_counter() - t0
            rec = recommend_all(model, fit_m, val_users, k)
            scores = ranking_metrics(rec, val_m, k, users=val_users)
            row["score"] = float(scores[metric])
            row["metrics"] = {m: float(scores[m]) for m in RANKING_KEYS}
        except (FloatingPointError, ValueError, ArithmeticError) as exc:
            # A diverging configuration is a bad trial, not a failed search.
            row["fit_seconds"] = time.perf_counter() - t0
            row["score"] = float("-inf")
            row["error"] = f"{type(exc).__name__}: {exc}"
        trials.append(row)
    # Confirmation: one validation fit is noisy (init seed), so the leaders are refit with
    # other seeds and ranked by their mean score.
    leaders = sorted(trials, key=lambda r: (-r["score"], r["trial"]))[: max(confirm_top, 0)]
    for row in leaders:
        if not np.isfinite(row["score"]):
            continue
        scores = [row["score"]]
        for extra in range(1, confirm_seeds + 1):
            params = {**base, **row["params"], "random_state": seed + 1000 * extra}
            try:
                model = factory(strategy, **params).fit(fit_m)
            except (FloatingPointError, ValueError, ArithmeticError):
                scores.append(float("-inf"))
                continue
            rec = recommend_all(model, fit_m, val_users, k)
            scores.append(float(ranking_metrics(rec, val_m, k, users=val_users)[metric]))
        row["confirm_scores"] = scores
        row["score"] = float(np.mean(scores))
    best = max(trials, key=lambda r: (r["score"], -r["trial"]))
    return TuningResult(
        best_params={**{k: to_plain(v) for k, v in base.items()}, **best["params"]},
        best_score=best["score"],
        metric=metric,
        k=k,
        trials=trials,
        validation=val_info,
    )
