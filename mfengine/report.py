"""The evaluation report of a trained model: one plain, JSON-serialisable dict.

Layout (every key always present; lists and dicts of str/int/float/bool/None only)::

    format, format_version, model {strategy, params, n_users, n_items, factors}
    dataset {...caller's summary..., split counts}
    split {...caller's description..., n_users, n_items, train_interactions, ...}
    ks [5, 10, 20]
    metrics {segment: {str(k): {metric: value}}}        segments: overall, cold_users, long_tail
    rating {rmse, mae, n} | None
    baselines {name: {segment: {str(k): {...}}}}         popularity always
    checks [{name, passed, reason, values}], checks_passed
    norm_histograms {users|items: {bin_edges, counts}}
    loss_history [...]
    lorenz {k, item_share, recommendation_share}
    comparison None | {previous_model, metrics: {segment: {k: {metric: {previous, current,
                                                      delta, relative}}}}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfengine.baselines import PopularityRecommender
from mfengine.checks import all_passed, check_model, row_norms
from mfengine.evaluation import (
    evaluate_model,
    lorenz_curve,
    recommendation_counts,
    split_summary,
)

REPORT_FORMAT = "mfengine-evaluation-report"
REPORT_FORMAT_VERSION = 1


def to_plain(value: Any) -> Any:
    """Plain Python for JSON: numpy scalars/arrays become Python types recursively, NaN/Inf
    become None, anything else its str. The one such helper of mfengine."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def norm_histogram(factors: np.ndarray, bins: int = 20) -> dict[str, list]:
    norms = row_norms(factors)  # no float64 copy of every factor (384 MB at 750k users)
    norms = norms[np.isfinite(norms)]
    if norms.size == 0:
        return {"bin_edges": [], "counts": []}
    counts, edges = np.histogram(norms, bins=bins)
    return {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def compare_reports(current: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """Deltas (current - previous) and relative change per segment, K and metric present in
    both reports (relative is None when the previous value is 0)."""
    out: dict[str, Any] = {}
    cur_m = current.get("metrics", {})
    prev_m = previous.get("metrics", {})
    for segment, per_k in cur_m.items():
        for k, metrics in per_k.items():
            prev = prev_m.get(segment, {}).get(str(k))
            if not prev:
                continue
            for name, value in metrics.items():
                old = prev.get(name)
                if name == "n_users" or not isinstance(value, int | float) or old is None:
                    continue
                if not isinstance(old, int | float):
                    continue
                delta = float(value) - float(old)
                out.setdefault(segment, {}).setdefault(str(k), {})[name] = {
                    "previous": float(old),
                    "current": float(value),
                    "delta": delta,
                    "relative": delta / float(old) if old else None,
                }
    return {"previous_model": previous.get("model"), "metrics": out}


def build_report(
    model: Any,
    train: sp.spmatrix,
    test: sp.spmatrix,
    ks: Sequence[int] = (5, 10, 20),
    *,
    baselines: Mapping[str, Any] | None = None,
    previous_report: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None = None,
    split: Mapping[str, Any] | None = None,
    test_ratings: sp.spmatrix | None = None,
    check_options: Mapping[str, Any] | None = None,
    histogram_bins: int = 20,
    cold_threshold: int = 5,
    head_share: float = 0.2,
) -> dict[str, Any]:
    """Evaluate ``model`` on (train, test) and assemble the report (see module docstring).

    ``baselines``: name -> fitted recommender with the same recommend interface; a popularity
    baseline fitted on ``train`` is added when none is named "popularity".
    """
    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test)
    ks = sorted({int(k) for k in ks})
    opts = {"cold_threshold": cold_threshold, "head_share": head_share}
    result = evaluate_model(
        model, train, test, ks, test_ratings=test_ratings, return_recommendations=True, **opts
    )
    all_baselines = dict(baselines or {})
    if "popularity" not in all_baselines:
        all_baselines["popularity"] = PopularityRecommender().fit(train)
    baseline_metrics = {
        name: evaluate_model(b, train, test, ks, **opts)["metrics"]
        for name, b in all_baselines.items()
    }

    has_factors = hasattr(model, "user_factors_") and hasattr(model, "item_factors_")
    checks = check_model(model, train, **dict(check_options or {})) if has_factors else []
    histograms = (
        {"users": norm_histogram(model.user_factors_, histogram_bins),
         "items": norm_histogram(model.item_factors_, histogram_bins)}
        if has_factors else {"users": {"bin_edges": [], "counts": []},
                             "items": {"bin_edges": [], "counts": []}}
    )
    lorenz_k = 10 if 10 in ks else ks[-1]
    counts = recommendation_counts(result["recommended"], train.shape[1], lorenz_k)
    params = model.get_params() if hasattr(model, "get_params") else {}
    summary = split_summary((train, test))

    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "model": {
            "strategy": getattr(model, "name", type(model).__name__),
            "params": params,
            "n_users": int(train.shape[0]),
            "n_items": int(train.shape[1]),
            "factors": int(model.item_factors_.shape[1]) if has_factors else None,
        },
        "dataset": {**dict(dataset or {}), "n_users": summary["n_users"],
                    "n_items": summary["n_items"]},
        "split": {**dict(split or {}), **summary},
        "ks": ks,
        "n_users_evaluated": result["n_users"],
        "metrics": result["metrics"],
        "rating": result.get("rating"),
        "baselines": baseline_metrics,
        "checks": checks,
        "checks_passed": all_passed(checks),
        "norm_histograms": histograms,
        "loss_history": list(getattr(model, "loss_history_", [])),
        "lorenz": {"k": lorenz_k, **lorenz_curve(counts)},
        "comparison": None,
    }
    report = to_plain(report)
    if previous_report is not None:
        report["comparison"] = to_plain(compare_reports(report, previous_report))
    return report


def primary_metric(report: Mapping[str, Any], metric: str = "ndcg", k: int = 10,
                   segment: str = "overall") -> float | None:
    """One number out of a report (e.g. for promotion rules)."""
    value = report.get("metrics", {}).get(segment, {}).get(str(k), {}).get(metric)
    return None if value is None else float(value)
