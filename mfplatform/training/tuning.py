"""`training.tune`: a hyperparameter search inside a training run.

The search sees only the training period (the events before the evaluation's test period),
split once more by the plan's own protocol: a per-user temporal split with the plan's
`test_fraction`, or a global split holding out the last `test_days` of the training period.
mfengine.tuning runs a seeded random search (the plan's configured values are trial 0) within
the time budget, stopping weak trials early by successive halving unless
`tune.early_stopping` is false, confirms the best trial and the configured values over 3
seeds each, and keeps the choice only when its mean per-user gain over the validation users
exceeds two standard errors, a paired test (see `mfengine.keep_rule.tune_against_defaults`),
and again on a second carve-out on which no trial was chosen: the events just before the
validation ones held out, everything else fitted (`splits.earlier_band`). The report's
"tuning" section records all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from mfengine.data import PreparedData
from mfengine.keep_rule import tune_against_defaults
from mfplatform.training.dataset import EventArrays
from mfplatform.training.splits import earlier_band, split_events, training_period

SEEDS = 3


def tune_training(config: dict, strategy: str, hyperparameters: dict, tune: dict,
                  events: EventArrays, prepared: PreparedData, cutoff: datetime,
                  progress: Callable[[dict[str, Any]], Any] | None = None) -> dict:
    """The report's tuning section; its "hyperparameters" are what the run trains with (the
    search's choice, or `hyperparameters` unchanged when the choice was within noise)."""
    period, period_end = training_period(config, events, cutoff)
    fit_matrix, validation_matrix = split_events(config, period, prepared, period_end)
    metric, _, k = tune["metric"].partition("@")
    split = config["split"]
    if validation_matrix.nnz == 0:
        return {"skipped": "the training period has no validation positives to tune on",
                "metric": tune["metric"], "trials": [], "kept": False,
                "hyperparameters": hyperparameters}
    carve_out = split_events(config, period, prepared, period_end,
                             held_out=earlier_band(config, period, period_end))
    section = tune_against_defaults(
        strategy, fit_matrix, validation_matrix, defaults=hyperparameters, seeds=SEEDS,
        carve_out=carve_out,
        n_trials=tune["trials"], time_budget_s=tune["time_budget_s"], metric=metric, k=int(k),
        halving_eta=3 if tune.get("early_stopping", True) else None,
        seed=int(hyperparameters.get("random_state") or 0), callback=progress)
    section["validation"] = {
        **section["validation"], "kind": split["kind"],
        **({"test_days": split["test_days"]} if split["kind"] == "global"
           else {"test_fraction": split["test_fraction"]}),
        "training_period_events": int(len(period.timestamps))}
    section["budget"] = {"trials": tune["trials"], "time_budget_s": tune["time_budget_s"],
                         "trials_run": len(section["trials"]), "fits": section["fits"],
                         "early_stopping": tune.get("early_stopping", True)}
    return section
