"""Budgeted hyperparameter search on a validation split carved from the training period.

`tune` receives only the training period's events (never the test set): it splits them again
(per-user temporal by default, or a global time cutoff), fits each candidate on the earlier
part, scores it on the later part with `mfengine.evaluation.ranking_metrics`, and returns the
best configuration with the table of trials. Random search: the strategy's defaults are always
trial 0, then ``n_trials - 1`` distinct random draws from the space. The default budget (12
trials) takes well under a minute on ml-latest-small on 2 cores.

Early stopping by successive halving (``halving_eta``, 3 by default, for strategies with an
``iterations`` hyperparameter): every trial is first fitted with 1/eta^2 of its iterations
(at least 3), the best third goes on at 1/eta, the best third of those at the full count;
only trials of the last rung can be chosen; too few iterations to cut means no halving.
At 15 iterations, 12 trials cost 12 + 4 + 2 fits, 86 iterations instead of 180. Every fit is
counted (``TuningResult.fits``), so the cost is known in fits, not only in seconds.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.evaluation import (
    RANKING_KEYS,
    global_time_split,
    per_user_ranking_metrics,
    recommend_all,
    temporal_split,
)
from mfengine.report import to_plain
from mfengine.splits import earlier_band_mask, masked_split, temporal_split_mask

DEFAULT_SPACES: dict[str, dict[str, list[Any]]] = {
    "als": {
        "factors": [16, 32, 64, 128],
        # shares of the confidence matrix's largest singular value, like the default "auto"
        # (0.17): a space that means the same on every data set
        "regularization": [0.06, 0.12, 0.23, 0.3, 0.4],
        "regularization_scaling": ["singular_value"],
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
    fits: int = 0  # every model fitted, partial (halving rungs) and confirmation fits included
    rungs: list[dict[str, Any]] = field(default_factory=list)
    #: trial number -> its metric per validation user, one array per full fit (the trial's
    #: own seed, then the confirmation seeds); for the trials that ended with a full fit.
    #: Arrays, so not part of ``to_dict``.
    per_user: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params,
            "best_score": self.best_score,
            "metric": self.metric,
            "k": self.k,
            "trials": self.trials,
            "validation": self.validation,
            "fits": self.fits,
            "rungs": self.rungs,
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
    binary: bool = True,
) -> tuple[sp.csr_matrix, sp.csr_matrix, dict[str, Any]]:
    """(fit matrix, validation matrix, description) from the TRAINING period's events only.

    ``"temporal"`` holds out each user's last ``validation_fraction`` of events; ``"global"``
    holds out everything after the (1 - fraction) quantile of the timestamps. The fit matrix
    is 0/1, or the summed values with ``binary=False`` (counts), like the model's own.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if validation == "temporal":
        fit_m, val_m = temporal_split(
            user_ids, item_ids, ts, values, shape=shape, test_fraction=validation_fraction,
            positive_threshold=positive_threshold, binary=binary,
        )
        return fit_m, val_m, {"kind": "temporal", "fraction": validation_fraction}
    if validation == "global":
        cutoff = int(np.quantile(ts, 1.0 - validation_fraction)) if len(ts) else 0
        fit_m, val_m = global_time_split(
            user_ids, item_ids, ts, values, cutoff=cutoff, shape=shape,
            positive_threshold=positive_threshold, binary=binary,
        )
        return fit_m, val_m, {"kind": "global", "cutoff": cutoff}
    raise ValueError("validation must be 'temporal' or 'global'")


def second_carve_out(
    user_ids: Any,
    item_ids: Any,
    timestamps: Any,
    values: Any = None,
    *,
    shape: tuple[int, int],
    validation: str = "temporal",
    validation_fraction: float = 0.2,
    positive_threshold: float | None = None,
    binary: bool = True,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """A second (fit, validation) pair of the training period for the keep rule's second test
    (:func:`mfengine.keep_rule.confirm_on_carve_out`): it holds out the band of events just
    before :func:`validation_split`'s held-out ones (each user's, or the period's, previous
    ``validation_fraction``) and fits on everything else, later events included. Its held-out
    events are disjoint from the first carve-out's, so a gain that came from choosing the best
    of many trials on those, or from their particular draw, does not carry here
    (benchmarks/tuning_transfer.py measured both)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if validation == "temporal":
        first = temporal_split_mask(user_ids, ts, validation_fraction, item_ids)
    elif validation == "global":
        first = ts >= (int(np.quantile(ts, 1.0 - validation_fraction)) if len(ts) else 0)
    else:
        raise ValueError("validation must be 'temporal' or 'global'")
    band = earlier_band_mask(user_ids, ts, first, validation_fraction, item_ids, validation)
    fit_m, val_m = masked_split(user_ids, item_ids, ts, values, held_out=band, shape=shape,
                                positive_threshold=positive_threshold, binary=binary)
    return fit_m, val_m


def validation_per_user(
    factory: Callable[..., Any], strategy: str, params: Mapping[str, Any],
    fit_matrix: sp.csr_matrix, validation_matrix: sp.csr_matrix, k: int,
) -> dict[str, np.ndarray]:
    """Fit ``strategy`` with ``params`` on ``fit_matrix``; its per-user ranking metrics at ``k``
    (train items filtered), one entry per user with validation positives, in user order."""
    users = np.flatnonzero(np.diff(validation_matrix.indptr) > 0)
    model = factory(strategy, **params)
    if "calculate_training_loss" in getattr(model, "get_params", dict)():
        # Nobody reads a trial's loss curve, and computing it costs ~40% of an ALS fit.
        model.set_params(calculate_training_loss=False)
    model.fit(fit_matrix)
    recommended = recommend_all(model, fit_matrix, users, k)
    per_user = per_user_ranking_metrics(recommended, validation_matrix[users], k)
    return {m: per_user[m] for m in RANKING_KEYS}


def validation_metrics(
    factory: Callable[..., Any], strategy: str, params: Mapping[str, Any],
    fit_matrix: sp.csr_matrix, validation_matrix: sp.csr_matrix, k: int,
) -> dict[str, float]:
    """Fit ``strategy`` with ``params`` on ``fit_matrix``; its ranking metrics at ``k`` on the
    users with validation positives (train items filtered), averaged over them."""
    per_user = validation_per_user(factory, strategy, params, fit_matrix, validation_matrix, k)
    return {m: float(values.mean()) if values.size else 0.0 for m, values in per_user.items()}


def score_trial(
    factory: Callable[..., Any], strategy: str, params: dict[str, Any],
    fit_m: sp.csr_matrix, val_m: sp.csr_matrix, metric: str, k: int,
) -> dict[str, Any]:
    """One validation fit: its metrics and score, or the error (score -inf). ``_per_user``
    holds the metric per validation user (None after an error) for the paired keep rule; it
    is private to this module and never reaches a report."""
    t0 = time.perf_counter()
    try:
        per_user = validation_per_user(factory, strategy, params, fit_m, val_m, k)
        metrics = {m: float(v.mean()) if v.size else 0.0 for m, v in per_user.items()}
        out: dict[str, Any] = {"metrics": metrics, "score": metrics[metric],
                               "_per_user": per_user[metric]}
    except _TRIAL_ERRORS as exc:
        # A diverging configuration is a bad trial, not a failed search.
        out = {"score": float("-inf"), "error": f"{type(exc).__name__}: {exc}",
               "_per_user": None}
    out["fit_seconds"] = time.perf_counter() - t0
    return out


_TRIAL_ERRORS = (FloatingPointError, ValueError, ArithmeticError)


def _seed_outcomes(
    factory: Callable[..., Any], strategy: str, params: dict[str, Any],
    first: dict[str, Any] | None, seeds: list[int], fit_m: sp.csr_matrix,
    val_m: sp.csr_matrix, metric: str, k: int,
) -> list[dict[str, Any]]:
    """``first`` (the outcome of the trial's own full fit, if any) and the outcomes of refits
    with ``seeds``, each with its ``score`` and ``_per_user`` metric."""
    outcomes = [] if first is None else [first]
    for random_state in seeds:
        outcomes.append(score_trial(factory, strategy, {**params, "random_state": random_state},
                               fit_m, val_m, metric, k))
    return outcomes


def choosable_trials(final: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that can be chosen: the confirmed ones when any were (a mean over seeds
    and a single fit's score are not compared), else every trial of the last rung."""
    return [row for row in final if "confirm_scores" in row] or final


def halving_rungs(n_configs: int, eta: int | None, max_rungs: int = 3) -> list[int]:
    """How many configurations successive halving fits at each rung: n, ceil(n / eta), ...
    (at most ``max_rungs`` rungs, stopping at one configuration); [n] without halving."""
    sizes = [n_configs]
    while eta and len(sizes) < max_rungs and sizes[-1] > 1:
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


#: Fewest iterations of a halving rung: after one or two ALS sweeps from a random start the
#: ranking says little about the final one.
MIN_RUNG_ITERATIONS = 3


def rung_iterations(full: int, rung: int, n_rungs: int, eta: int | None) -> int:
    """Iterations of a fit at ``rung``: the full count at the last rung, / eta per rung before
    (at least MIN_RUNG_ITERATIONS, at most the full count)."""
    if not eta:
        return full
    return min(full, max(MIN_RUNG_ITERATIONS, math.ceil(full / eta ** (n_rungs - 1 - rung))))


def _full_iterations(factory: Callable[..., Any], strategy: str, params: dict[str, Any]
                     ) -> int | None:
    """The configuration's iterations (None: the strategy has no such hyperparameter)."""
    if "iterations" in params:
        return int(params["iterations"])
    value = factory(strategy, **params).get_params().get("iterations")
    return None if value is None else int(value)


def _run_rungs(
    factory: Callable[..., Any], strategy: str, rows: list[dict[str, Any]],
    base: dict[str, Any], eta: int | None, fit_m: sp.csr_matrix, val_m: sp.csr_matrix,
    metric: str, k: int, time_budget_s: float | None,
    callback: Callable[[dict[str, Any]], Any] | None,
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """Fit the trials rung by rung (one rung without halving); returns the trials that ran,
    the number of fits and one summary per rung. Each row keeps its configuration in
    ``params`` and records the rung and iterations of its last fit."""
    started = time.perf_counter()
    sizes = halving_rungs(len(rows), eta)
    fits = 0
    rungs: list[dict[str, Any]] = []
    alive = rows
    for rung, size in enumerate(sizes):
        if rung:
            alive = sorted(alive, key=lambda r: (-r["score"], r["trial"]))[:size]
        done = []
        for row in alive:
            if fits and time_budget_s is not None and (
                    time.perf_counter() - started > time_budget_s):
                break
            params = {**base, **row["params"]}
            full = row["_full"]
            if full is not None:
                params["iterations"] = rung_iterations(full, rung, len(sizes), eta)
                row["iterations"] = params["iterations"]
            outcome = score_trial(factory, strategy, params, fit_m, val_m, metric, k)
            row["fit_seconds"] = row.get("fit_seconds", 0.0) + outcome.pop("fit_seconds")
            row.pop("error", None)
            row.update(outcome, rung=rung)
            row["full_fit"] = full is None or row["iterations"] == full
            fits += 1
            done.append(row)
            if callback is not None:
                callback(row)
        rungs.append({"rung": rung, "trials": len(done)})
        if len(done) < len(alive) or not done:
            alive = done
            break
        alive = done
    ran = [row for row in rows if "rung" in row]
    last = max((row["rung"] for row in ran), default=0)
    for row in ran:
        row.pop("_full", None)
        row["final"] = row["rung"] == last
    return ran, fits, rungs


def _confirm(
    factory: Callable[..., Any], strategy: str, base: dict[str, Any],
    final: list[dict[str, Any]], confirm_top: int, seeds: list[int], fit_m: sp.csr_matrix,
    val_m: sp.csr_matrix, metric: str, k: int,
) -> dict[int, list[np.ndarray]]:
    """Confirmation: one validation fit is noisy (init seed), so the ``confirm_top`` leaders
    of the last rung are refit with ``seeds`` and ranked by their mean score
    (``confirm_scores`` holds the parts). Returns each full-fitted trial's per-user metric
    arrays, one per fit (TuningResult.per_user)."""
    leaders = sorted(final, key=lambda r: (-r["score"], r["trial"]))[: max(confirm_top, 0)]
    per_user = {row["trial"]: [row["_per_user"]] for row in final
                if row["full_fit"] and row.get("_per_user") is not None}
    for row in leaders:
        if not np.isfinite(row["score"]):
            continue
        first = ({"score": row["score"], "_per_user": row.get("_per_user")}
                 if row["full_fit"] else None)
        outcomes = _seed_outcomes(factory, strategy, {**base, **row["params"]}, first, seeds,
                                  fit_m, val_m, metric, k)
        row["confirm_scores"] = [o["score"] for o in outcomes]
        if outcomes:
            row["score"] = float(np.mean(row["confirm_scores"]))
        arrays = [o["_per_user"] for o in outcomes]
        if arrays and all(a is not None for a in arrays):
            per_user[row["trial"]] = arrays
        else:
            per_user.pop(row["trial"], None)
    return per_user


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
    halving_eta: int | None = 3,
    factory: Callable[..., Any] | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> TuningResult:
    """Random search over ``space`` (default: DEFAULT_SPACES[strategy]) on prepared matrices:
    fit on ``fit_matrix``, score on ``validation_matrix`` (binary held-out positives).

    ``base_params`` are fixed for every trial (e.g. random_state, num_threads); trial 0 uses
    them alone (the defaults). ``halving_eta`` (None: off) stops weak trials early by
    successive halving on iterations (module docstring). Fits stop once ``time_budget_s`` is
    spent (at least one runs); only trials of the last rung reached (``final``) can win. The
    ``confirm_top`` best of those are refit at their full iterations with ``confirm_seeds``
    other seeds and scored by their mean (``score``; the parts in ``confirm_scores``); the
    best confirmed trial wins.
    ``factory(name, **params)`` builds a model (default ``mfengine.create``);
    ``callback(trial_row)`` runs after each fit.
    """
    if factory is None:
        import mfengine

        factory = mfengine.create
    if metric not in RANKING_KEYS:
        raise ValueError(f"unknown metric {metric!r}")
    if halving_eta is not None and halving_eta < 2:
        raise ValueError("halving_eta must be >= 2 or None")
    space = dict(DEFAULT_SPACES.get(strategy, {}) if space is None else space)
    rng = np.random.default_rng(seed)
    base = dict(base_params or {})
    candidates = ([{}] + _draws(space, max(n_trials - 1, 0), rng))[:n_trials]
    rows = [{"trial": number, "params": to_plain(dict(params)),
             "_full": _full_iterations(factory, strategy, {**base, **params})}
            for number, params in enumerate(candidates)]
    n_rungs = len(halving_rungs(len(rows), halving_eta))
    if any(row["_full"] is None or rung_iterations(row["_full"], 0, n_rungs, halving_eta)
           >= row["_full"] for row in rows):
        halving_eta = None  # nothing to stop early on: every rung would be a full fit
    trials, fits, rungs = _run_rungs(factory, strategy, rows, base, halving_eta, fit_matrix,
                                     validation_matrix, metric, k, time_budget_s, callback)
    final = [row for row in trials if row["final"]]
    seeds = [seed + 1000 * extra for extra in range(1, confirm_seeds + 1)]
    per_user = _confirm(factory, strategy, base, final, confirm_top, seeds, fit_matrix,
                        validation_matrix, metric, k)
    fits += len(seeds) * sum("confirm_scores" in row for row in final)
    for row in trials:
        row.pop("_per_user", None)
    best = max(choosable_trials(final), key=lambda r: (r["score"], -r["trial"]))
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
        fits=fits,
        rungs=[{**r, "eta": halving_eta} for r in rungs],
        per_user=per_user,
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
