"""Evaluation reports for registry tests, in mfengine.report's format, without training."""

from __future__ import annotations

from mfengine.report import compare_reports


def report(ndcg: float, popularity: float = 0.10, top1: float = 0.05) -> dict:
    """The smallest report the promotion gate reads: NDCG@10 and the popularity baseline."""
    return {"metrics": {"overall": {"10": {"ndcg": ndcg, "top1pct_share": top1}}},
            "baselines": {"popularity": {"overall": {"10": {"ndcg": popularity}}}}}


def _segments(scale: float) -> dict:
    return {segment: {str(k): {"ndcg": round(scale * share * k / 20, 4),
                               "recall": round(scale * share * k / 10, 4),
                               "hit_rate": round(min(1.0, scale * share * k / 5), 4),
                               "map": round(scale * share / 3, 4), "coverage": 0.4,
                               "novelty": 6.5, "gini": 0.55, "top1pct_share": 0.04,
                               "n_users": 50}
                      for k in (5, 10, 20)}
            for segment, share in (("overall", 1.0), ("cold_users", 0.6), ("long_tail", 0.3))}


def full_report(scale: float = 0.3, previous: dict | None = None) -> dict:
    """Every section the report page draws: metrics per segment and K, baselines, norm
    histograms, the Lorenz curve, the loss history and (given `previous`) the comparison."""
    current = {
        "format": "mfengine-evaluation-report", "format_version": 1,
        "model": {"strategy": "als", "params": {"factors": 8}, "n_users": 50, "n_items": 40,
                  "factors": 8},
        "ks": [5, 10, 20], "metrics": _segments(scale),
        "baselines": {"popularity": _segments(scale / 2)},
        "checks": [], "checks_passed": True,
        "norm_histograms": {side: {"bin_edges": [0.0, 0.5, 1.0, 1.5, 2.0],
                                   "counts": [3, 10, 20, 7]} for side in ("users", "items")},
        "loss_history": [10.0, 6.0, 4.5, 4.0, 3.8],
        "lorenz": {"k": 10, "item_share": [0.0, 0.25, 0.5, 0.75, 1.0],
                   "recommendation_share": [0.0, 0.05, 0.15, 0.4, 1.0]},
        "comparison": None,
    }
    if previous is not None:
        current["comparison"] = compare_reports(current, previous)
    return current
