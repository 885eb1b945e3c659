"""The evaluation report of a model version as a standalone HTML page with charts.

Charts are drawn server-side by matplotlib (Agg backend) and inlined as PNG data URIs, so the
page is one self-contained response (API, admin and a saved file all look the same).
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402

from mfplatform.registry.models import ModelVersion  # noqa: E402

SEGMENTS = ("overall", "cold_users", "long_tail")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _metric_by_k(report: dict, previous: dict | None) -> str | None:
    metrics = report.get("metrics", {}).get("overall", {})
    ks = sorted(int(k) for k in metrics)
    if not ks:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    def values(series: dict, name: str) -> list | None:
        found = [series.get(str(k), {}).get(name) for k in ks]
        return None if any(v is None for v in found) else found

    for ax, name in zip(axes, ("ndcg", "recall"), strict=True):
        for label, source, style in (
                ("this model", report.get("metrics"), "-"),
                ("popularity", report.get("baselines", {}).get("popularity"), "--"),
                ("content", report.get("baselines", {}).get("content"), "--"),
                ("previous active", (previous or {}).get("metrics"), ":")):
            series = values((source or {}).get("overall", {}), name)
            if series is not None:
                ax.plot(ks, series, marker="o", linestyle=style, label=label)
        ax.set_xlabel("K")
        ax.set_title(f"{name.upper()}@K")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _png(fig)


def _segment_bars(report: dict) -> str | None:
    metrics = report.get("metrics", {})
    k = "10" if "10" in metrics.get("overall", {}) else next(iter(metrics.get("overall", {})),
                                                              None)
    if k is None:
        return None
    labels, ours, popular = [], [], []
    baseline = report.get("baselines", {}).get("popularity", {})
    for segment in SEGMENTS:
        if k in metrics.get(segment, {}):
            labels.append(segment.replace("_", " "))
            ours.append(metrics[segment][k].get("ndcg", 0.0))
            popular.append(baseline.get(segment, {}).get(k, {}).get("ndcg", 0.0))
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], ours, width=0.4, label="this model")
    ax.bar([x + 0.2 for x in xs], popular, width=0.4, label="popularity")
    ax.set_xticks(list(xs), labels)
    ax.set_title(f"NDCG@{k} by segment")
    ax.legend(fontsize=8)
    return _png(fig)


def _norm_histograms(report: dict) -> str | None:
    hist = report.get("norm_histograms", {})
    if not hist.get("items", {}).get("counts"):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, side in zip(axes, ("users", "items"), strict=True):
        edges, counts = hist[side]["bin_edges"], hist[side]["counts"]
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        ax.set_title(f"{side[:-1]} vector norms")
        ax.set_xlabel("L2 norm")
    return _png(fig)


def _lorenz(report: dict) -> str | None:
    lorenz = report.get("lorenz") or {}
    if not lorenz.get("item_share"):
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(lorenz["item_share"], lorenz["recommendation_share"], label="recommendations")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="equal share")
    ax.set_xlabel("share of items (least recommended first)")
    ax.set_ylabel("share of recommendation slots")
    ax.set_title(f"Popularity concentration (Lorenz, K={lorenz.get('k')})")
    ax.legend(fontsize=8)
    return _png(fig)


def _loss(report: dict) -> str | None:
    losses = [v for v in report.get("loss_history", []) if v is not None]
    if not losses:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("iteration")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    return _png(fig)


def report_context(version: ModelVersion) -> dict:
    report = version.report or {}
    comparison = (report.get("comparison") or {}).get("metrics") or {}
    # The previous active version's metrics, as mfengine.report.compare_reports kept them.
    previous = {segment: {k: {name: v["previous"] for name, v in values.items()}
                          for k, values in per_k.items()}
                for segment, per_k in comparison.items()}
    charts = {
        "Metrics by K": _metric_by_k(report, {"metrics": previous} if previous else None),
        "Segments": _segment_bars(report),
        "Vector norms": _norm_histograms(report),
        "Popularity concentration": _lorenz(report),
        "Training loss": _loss(report),
    }
    rows = []
    for segment in SEGMENTS:
        for k, values in sorted(report.get("metrics", {}).get(segment, {}).items(),
                                key=lambda item: int(item[0])):
            base = report.get("baselines", {}).get("popularity", {}).get(segment, {}).get(k, {})
            prior = comparison.get(segment, {}).get(k, {})
            rows.append({"segment": segment, "k": k, "values": values, "popularity": base,
                         "previous": {name: v["previous"] for name, v in prior.items()},
                         "ndcg_delta": (prior.get("ndcg") or {}).get("relative")})
    return {"version": version, "report": report, "charts": {t: c for t, c in charts.items()
                                                             if c},
            "rows": rows, "checks": version.checks or [], "decision": version.decision or {},
            "has_previous": bool(comparison)}


def render_report_html(version: ModelVersion) -> str:
    return render_to_string("registry/report.html", report_context(version))
