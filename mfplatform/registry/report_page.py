"""The evaluation report of a model version as a standalone HTML page with charts.

Charts are drawn server-side by matplotlib and inlined as PNG data URIs, so the page is one
self-contained response: the API, the admin and a saved file all look the same. Each chart is
a `matplotlib.figure.Figure` of its own, never pyplot's global state, which is not safe in a
threaded web server. The comparison with the previously active version is the report's own
"comparison" section (mfengine.report.compare_reports), so the page shows exactly what the
run measured; the popularity (and content) baselines come from the same split.
"""

from __future__ import annotations

from django.template.loader import render_to_string

from mfplatform.charts import new_figure, png_data_uri
from mfplatform.registry.models import ModelVersion

SEGMENTS = ("overall", "cold_users", "long_tail")
CURVE_METRICS = ("ndcg", "recall", "hit_rate")
COLOURS = {"this model": "#1f77b4", "previous active": "#9467bd", "popularity": "#ff7f0e",
           "content": "#2ca02c"}


def previous_metrics(report: dict) -> dict:
    """{segment: {k: {metric: value}}} of the previously active version, as the report's
    comparison section recorded it (empty when there was none)."""
    comparison = (report.get("comparison") or {}).get("metrics") or {}
    return {segment: {k: {name: v["previous"] for name, v in values.items()}
                      for k, values in per_k.items()}
            for segment, per_k in comparison.items()}


def _series(report: dict) -> list[tuple[str, dict]]:
    """(label, {segment: {k: {metric: value}}}) for this model and what it is compared with."""
    out = [("this model", report.get("metrics") or {})]
    previous = previous_metrics(report)
    if previous:
        out.append(("previous active", previous))
    for name in ("popularity", "content"):
        baseline = (report.get("baselines") or {}).get(name)
        if baseline:
            out.append((name, baseline))
    return out


def _ks(report: dict) -> list[int]:
    return sorted(int(k) for k in (report.get("metrics") or {}).get("overall", {}))


def _main_k(report: dict) -> str | None:
    ks = _ks(report)
    if not ks:
        return None
    return "10" if 10 in ks else str(ks[-1])


def _metric_by_k(report: dict) -> str | None:
    ks = _ks(report)
    if not ks:
        return None
    fig = new_figure(figsize=(11, 3.2))
    axes = fig.subplots(1, len(CURVE_METRICS))
    for ax, name in zip(axes, CURVE_METRICS, strict=True):
        for label, source in _series(report):
            overall = source.get("overall", {})
            points = [(k, overall.get(str(k), {}).get(name)) for k in ks]
            points = [(k, v) for k, v in points if v is not None]
            if points:
                ax.plot([k for k, _ in points], [v for _, v in points], marker="o",
                        linestyle="-" if label == "this model" else "--",
                        color=COLOURS[label], label=label)
        ax.set_xticks(ks)
        ax.set_xlabel("K")
        ax.set_title(f"{name.replace('_', ' ')}@K")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(labels), fontsize=9, frameon=False)
    return png_data_uri(fig)


def _segment_bars(report: dict) -> str | None:
    k = _main_k(report)
    if k is None:
        return None
    metrics = report.get("metrics") or {}
    segments = [s for s in SEGMENTS if k in metrics.get(s, {})]
    series = _series(report)
    fig = new_figure(figsize=(7, 3.2))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (label, source) in enumerate(series):
        heights = [source.get(s, {}).get(k, {}).get("ndcg") or 0.0 for s in segments]
        xs = [x - 0.4 + width * (i + 0.5) for x in range(len(segments))]
        ax.bar(xs, heights, width=width, label=label, color=COLOURS[label])
    ax.set_xticks(list(range(len(segments))),
                  [f"{s.replace('_', ' ')}\n({metrics[s][k].get('n_users', '?')} users)"
                   for s in segments])
    ax.set_title(f"NDCG@{k} by segment")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png_data_uri(fig)


def _norm_histograms(report: dict) -> str | None:
    hist = report.get("norm_histograms") or {}
    if not (hist.get("items") or {}).get("counts"):
        return None
    fig = new_figure(figsize=(9, 3))
    axes = fig.subplots(1, 2)
    for ax, side in zip(axes, ("users", "items"), strict=True):
        edges, counts = hist[side]["bin_edges"], hist[side]["counts"]
        if counts:
            ax.stairs(counts, edges, fill=True, alpha=0.7)
        ax.set_title(f"{side[:-1]} vector norms")
        ax.set_xlabel("L2 norm")
        ax.set_ylabel("count")
    return png_data_uri(fig)


def _lorenz(report: dict) -> str | None:
    lorenz = report.get("lorenz") or {}
    if not lorenz.get("item_share"):
        return None
    k = str(lorenz.get("k"))
    gini = (report.get("metrics") or {}).get("overall", {}).get(k, {}).get("gini")
    fig = new_figure(figsize=(4.2, 4))
    ax = fig.subplots()
    ax.plot(lorenz["item_share"], lorenz["recommendation_share"], label="recommendations")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="equal share")
    ax.set_xlabel("share of items (least recommended first)")
    ax.set_ylabel("share of recommendation slots")
    title = f"Lorenz curve, K={k}"
    ax.set_title(title if gini is None else f"{title}, Gini {gini:.2f}")
    ax.legend(fontsize=8)
    return png_data_uri(fig)


def _loss(report: dict) -> str | None:
    losses = [v for v in report.get("loss_history") or [] if v is not None]
    if not losses:
        return None
    fig = new_figure(figsize=(5, 3))
    ax = fig.subplots()
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    return png_data_uri(fig)


def _change(prior: dict | None) -> str:
    relative = (prior or {}).get("relative")
    return "" if relative is None else f"{relative:+.1%}"


def _rows(report: dict) -> list[dict]:
    metrics = report.get("metrics") or {}
    comparison = (report.get("comparison") or {}).get("metrics") or {}
    popularity = (report.get("baselines") or {}).get("popularity") or {}
    segments = [s for s in SEGMENTS if s in metrics] + [s for s in metrics if s not in SEGMENTS]
    rows = []
    for segment in segments:
        for k, values in sorted(metrics[segment].items(), key=lambda item: int(item[0])):
            if values.get("n_users") == 0:  # an empty segment has no numbers, only zeros
                continue
            prior = comparison.get(segment, {}).get(k, {})
            rows.append({"segment": segment.replace("_", " "), "k": k, "values": values,
                         "popularity": popularity.get(segment, {}).get(k, {}),
                         "previous": {name: v["previous"] for name, v in prior.items()},
                         "ndcg_change": _change(prior.get("ndcg")),
                         "recall_change": _change(prior.get("recall"))})
    return rows


def _decision_rows(decision: dict) -> list[dict]:
    """The gate's numbers side by side: each value next to what it had to reach."""
    values = decision.get("values") or {}
    thresholds = decision.get("thresholds") or {}
    labels = {"candidate": "this model", "active": "active version",
              "popularity": "popularity baseline", "top1pct_share": "top-1% share"}
    rows = []
    for name in sorted(values, key=lambda n: list(labels).index(n) if n in labels else 9):
        value = values[name]
        if name == "candidate":
            need = ""
        elif name == "top1pct_share":
            need = f"at most {thresholds[name]}" if thresholds.get(name) is not None else ""
        else:
            need = (f"this model needs ≥ {thresholds[name]:.4f}"
                    if thresholds.get(name) is not None else "")
        rows.append({"name": labels.get(name, name), "value": value, "need": need})
    return rows


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "(the plan's values)"


def _tuning(report: dict) -> dict | None:
    """The tuning section for the page: its summary and one row per trial, the chosen one and
    the plan's own values (trial 0) marked."""
    tuning = report.get("tuning")
    if not tuning:
        return None
    chosen = (tuning.get("chosen") or {}).get("trial")
    rows = []
    for trial in tuning.get("trials") or []:
        number = trial.get("trial")
        marks = [m for m, on in (("plan's values", number == 0),
                                 ("chosen", number == chosen and number != 0)) if on]
        if trial.get("final") is False:  # successive halving stopped it
            marks.append(f"stopped early ({trial.get('iterations')} iterations)")
        rows.append({"trial": number, "params": _params_text(trial.get("params") or {}),
                     "score": trial.get("score"), "seeds": trial.get("confirm_scores") or [],
                     "seconds": trial.get("fit_seconds"), "error": trial.get("error", ""),
                     "mark": ", ".join(marks)})
    relative = tuning.get("relative_gain")
    return {**tuning, "rows": rows,
            "relative_text": "" if relative is None else f"{relative:+.1%}",
            "defaults_params": _params_text((tuning.get("defaults") or {}).get("params") or {}),
            "chosen_params": _params_text((tuning.get("chosen") or {}).get("params") or {}),
            "used_params": _params_text(tuning.get("hyperparameters") or {})}


def report_context(version: ModelVersion, log=None, back_url: str | None = None) -> dict:
    report = version.report or {}
    charts = {
        "Metrics by K": _metric_by_k(report),
        "Segments": _segment_bars(report),
        "Vector norms": _norm_histograms(report),
        "Popularity concentration": _lorenz(report),
        "Training loss": _loss(report),
    }
    comparison = report.get("comparison") or {}
    decision = version.decision or {}
    return {"version": version, "report": report,
            "charts": {title: src for title, src in charts.items() if src},
            "rows": _rows(report), "tuning": _tuning(report),
            "checks": version.checks or report.get("checks") or [],
            "decision": decision, "decision_rows": _decision_rows(decision),
            "has_previous": bool(comparison.get("metrics")),
            "previous_model": comparison.get("previous_model") or {},
            "compared_version": decision.get("active_version"),
            "log": list(log) if log is not None else [], "back_url": back_url}


def render_report_html(version: ModelVersion, log=None, back_url: str | None = None) -> str:
    """The standalone page; `log` (audit log entries naming the version) and `back_url` (the
    admin page it was opened from) are optional."""
    return render_to_string("registry/report.html", report_context(version, log, back_url))
