"""The tuner's keep rule: a search (:func:`mfengine.tuning.search`) whose choice replaces the
defaults only when it beats them by more than noise, judged by a paired test over the
validation users, and, when a second carve-out is given, again on that carve-out, on which
nothing was selected (:func:`confirm_on_carve_out`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.report import to_plain
from mfengine.tuning import TuningResult, choosable_trials, score_trial, search

#: The keep rule's threshold in standard errors of the mean per-user gain (about a one-sided
#: 2.5% false-keep rate when the choice is no better than the defaults).
KEEP_STANDARD_ERRORS = 2.0


def paired_gain(chosen: np.ndarray, defaults: np.ndarray) -> dict[str, float]:
    """Mean and standard error of the per-user difference ``chosen - defaults`` (the same
    users in the same order), and how many users it is over."""
    diff = np.asarray(chosen, dtype=np.float64) - np.asarray(defaults, dtype=np.float64)
    n = int(diff.size)
    mean = float(diff.mean()) if n else 0.0
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": mean, "se": se, "n_users": n}


def _defaults_outcomes(
    factory: Callable[..., Any], strategy: str, defaults: dict[str, Any],
    result: TuningResult, seeds: int, seed: int, fit_m: sp.csr_matrix, val_m: sp.csr_matrix,
) -> tuple[list[float], list[np.ndarray | None], int]:
    """The defaults' (trial 0's) validation scores and per-user arrays over the same seeds as
    the chosen trial, and how many fits that took beyond the search's. Trial 0's own fits
    are reused: all of them when it was the confirmed one, its full fit when it made one."""
    first = result.trials[0]
    arrays = result.per_user.get(0, [])
    if first.get("confirm_scores") is not None:
        return list(first["confirm_scores"]), list(arrays), 0
    extra: list[int | None] = [seed + 1000 * n for n in range(1, seeds)]
    outcomes = [{"score": first["score"], "_per_user": arrays[0]}] if arrays else []
    if not arrays:
        extra = [None, *extra]  # None: the defaults' own random_state
    for random_state in extra:
        params = defaults if random_state is None else {**defaults, "random_state": random_state}
        outcomes.append(score_trial(factory, strategy, params, fit_m, val_m, result.metric,
                               result.k))
    return [o["score"] for o in outcomes], [o["_per_user"] for o in outcomes], len(extra)


def confirm_on_carve_out(
    factory: Callable[..., Any], strategy: str, chosen: dict[str, Any],
    defaults: dict[str, Any], carve_out: tuple[sp.csr_matrix, sp.csr_matrix],
    seeds: list[int], metric: str, k: int, keep_standard_errors: float,
) -> dict[str, Any]:
    """The chosen configuration against the defaults on a carve-out the search never scored:
    both fitted with the same ``seeds``, each user's metric averaged over them, the same
    paired test. Its gain is free of the search's selection (the best of many trials on one
    carve-out looks better there than it is) and of that carve-out's particular draw."""
    fit_m, val_m = carve_out
    arrays: dict[str, list[np.ndarray]] = {"chosen": [], "defaults": []}
    for name, params in (("chosen", chosen), ("defaults", defaults)):
        for random_state in seeds:
            outcome = score_trial(factory, strategy, {**params, "random_state": random_state},
                                  fit_m, val_m, metric, k)
            if outcome["_per_user"] is None:  # a diverging fit: nothing to confirm with
                return {"passed": False, "error": outcome["error"],
                        "fits": len(arrays["chosen"]) + len(arrays["defaults"]) + 1}
            arrays[name].append(outcome["_per_user"])
    defaults_mean = float(np.mean(arrays["defaults"])) if val_m.nnz else 0.0
    paired = paired_gain(np.mean(arrays["chosen"], axis=0), np.mean(arrays["defaults"], axis=0))
    margin = keep_standard_errors * paired["se"]
    return {"gain": paired["mean"], "gain_se": paired["se"], "margin": margin,
            "relative_gain": paired["mean"] / defaults_mean if defaults_mean else None,
            "n_users": paired["n_users"], "fit_interactions": int(fit_m.nnz),
            "passed": paired["n_users"] > 1 and paired["mean"] > margin,
            "fits": 2 * len(seeds)}


def tune_against_defaults(
    strategy: str,
    fit_matrix: sp.csr_matrix,
    validation_matrix: sp.csr_matrix,
    *,
    defaults: Mapping[str, Any],
    seeds: int = 3,
    keep_standard_errors: float = KEEP_STANDARD_ERRORS,
    carve_out: tuple[sp.csr_matrix, sp.csr_matrix] | None = None,
    factory: Callable[..., Any] | None = None,
    **search_options: Any,
) -> dict[str, Any]:
    """A search whose choice replaces ``defaults`` only when it beats them by more than noise.

    A paired test over the validation users: the best trial and the defaults are each fitted
    with the same ``seeds`` seeds (the search's own, then the confirmation seeds); each user's
    metric is averaged over those fits, and the choice is kept only when the mean per-user
    difference (chosen - defaults) exceeds ``keep_standard_errors`` standard errors of that
    mean. With ``carve_out`` (a second (fit, validation) pair of the training period, e.g.
    :func:`mfengine.tuning.second_carve_out`), a choice that passes is tested once more there
    (:func:`confirm_on_carve_out`) and kept only if it passes both. Returns a plain
    (JSON-ready) dict: the trials, chosen vs defaults, the gain with its standard error and
    number of users, the second carve-out's test (``confirmation``), the rule, whether kept
    and the ``hyperparameters`` to train with.
    """
    if factory is None:
        import mfengine

        factory = mfengine.create
    started = time.perf_counter()
    defaults = dict(defaults)
    result = search(strategy, fit_matrix, validation_matrix, base_params=defaults,
                    confirm_top=1, confirm_seeds=seeds - 1, factory=factory, **search_options)
    best = max(choosable_trials([r for r in result.trials if r["final"]]),
               key=lambda r: (r["score"], -r["trial"]))
    default_scores, default_arrays, extra_fits = _defaults_outcomes(
        factory, strategy, defaults, result, seeds, int(search_options.get("seed", 0)),
        fit_matrix, validation_matrix)
    fits = result.fits + extra_fits
    finite = bool(np.all(np.isfinite(default_scores)))
    default_mean = float(np.mean(default_scores)) if finite else float("-inf")
    chosen_arrays = result.per_user.get(best["trial"], [])
    comparable = (best["trial"] != 0 and finite and bool(np.isfinite(best["score"]))
                  and len(chosen_arrays) == len(default_arrays) > 0
                  and all(a is not None for a in default_arrays))
    if comparable:
        paired = paired_gain(np.mean(chosen_arrays, axis=0), np.mean(default_arrays, axis=0))
    else:  # the defaults won, or a fit failed: nothing to test
        paired = {"mean": best["score"] - default_mean if finite else 0.0, "se": 0.0,
                  "n_users": int(result.validation.get("validation_users", 0))}
    margin = keep_standard_errors * paired["se"]
    kept = comparable and paired["mean"] > margin
    gain = paired["mean"]
    chosen = {**defaults, **best["params"]}
    confirmation = None
    if carve_out is not None:
        confirmation = _second_test(factory, strategy, chosen, defaults, carve_out, kept,
                                    seeds, int(search_options.get("seed", 0)), result,
                                    keep_standard_errors)
        fits += confirmation["fits"]
        kept = kept and confirmation["passed"]
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
        "gain_se": paired["se"],
        "noise": {"se": paired["se"], "margin": margin, "k": keep_standard_errors,
                  "n_users": paired["n_users"], "seeds": seeds,
                  "rule": _rule_text(paired["n_users"], seeds, keep_standard_errors,
                                     confirmation)},
        "confirmation": confirmation,
        "kept": kept,
        "fits": fits,
        "rungs": result.rungs,
        "hyperparameters": chosen if kept else defaults,
        "seconds": time.perf_counter() - started,
    })


def _second_test(
    factory: Callable[..., Any], strategy: str, chosen: dict[str, Any],
    defaults: dict[str, Any], carve_out: tuple[sp.csr_matrix, sp.csr_matrix],
    passed_first: bool, seeds: int, seed: int, result: TuningResult,
    keep_standard_errors: float,
) -> dict[str, Any]:
    """The report's ``confirmation``: the second carve-out's test, run only for a choice that
    passed the first (the defaults need no confirming)."""
    if not passed_first:
        return {"passed": False, "fits": 0,
                "skipped": "the choice did not pass the first carve-out's test"}
    return confirm_on_carve_out(
        factory, strategy, chosen, defaults, carve_out,
        [seed + 1000 * n for n in range(seeds)], result.metric, result.k,
        keep_standard_errors)


def _rule_text(n_users: int, seeds: int, keep_standard_errors: float,
               confirmation: dict[str, Any] | None) -> str:
    rule = (f"kept when the mean per-user gain over the {n_users} validation users (each "
            f"averaged over {seeds} seeds) exceeds {keep_standard_errors:g} standard errors")
    if confirmation is None:
        return rule
    second = confirmation.get("n_users")
    return (rule + ", and again on a second carve-out of the training period"
            + (f" ({second} users)" if second is not None else "")
            + " on which no trial was chosen")
