"""The experiment's results as an admin page: tables per variant and per source, and charts
over time drawn by matplotlib (a Figure of its own per chart, as the registry's report page:
pyplot's global state is not safe in a threaded server), inlined as PNG data URIs."""

from __future__ import annotations

from collections import defaultdict

from mfplatform.admin_tables import number, table
from mfplatform.charts import new_figure, png_data_uri


def over_time_chart(results: dict) -> str | None:
    """Impressions and CTR per day and variant."""
    series: dict[str, list[tuple[str, int, float | None]]] = defaultdict(list)
    for row in results["daily"]:
        series[row["variant"]].append((row["day"], row["impressions"], row["ctr"]))
    if not series:
        return None
    fig = new_figure(figsize=(11, 3.2))
    shown, ctr = fig.subplots(1, 2)
    for variant, points in series.items():
        days = [d for d, _n, _c in points]
        shown.plot(days, [n for _d, n, _c in points], marker="o", label=variant)
        ctr.plot(days, [c or 0 for _d, _n, c in points], marker="o", label=variant)
    shown.set_title("impressions per day")
    ctr.set_title("CTR per day")
    for ax in (shown, ctr):
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize=8)
    return png_data_uri(fig)


def _ci(interval) -> str:
    return "-" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def variant_table(results: dict) -> str:
    rows = []
    for v in results["variants"]:
        test = v.get("vs_control") or {}
        rows.append((v["variant"] + (" (control)" if v["control"] else ""),
                     v["impressions"], v["clicked"], number(v["ctr"]), _ci(v["ctr_ci"]),
                     number(test.get("p_value")), number(test.get("p_adjusted")),
                     number(v["any_conversion_rate"]), number(v["hide_rate"]),
                     number(v["report_rate"]), number(v["fallback_rate"]),
                     number(v["empty_rate"]), number(v["latency_ms"]["p50"], 1),
                     number(v["latency_ms"]["p95"], 1), number(v["latency_ms"]["p99"], 1),
                     number(v["long_tail_share"]), number(v["coverage"])))
    return table(("variant", "impressions", "clicked", "CTR", "95% CI", "p", "p (Holm)",
                  "conversion", "hide", "report", "fallback", "empty", "p50 ms", "p95 ms",
                  "p99 ms", "long tail", "coverage"), rows, "variants")


def source_table(results: dict) -> str:
    rows = [(v["variant"], source, s["items_shown"], s["clicks"], number(s["ctr"]))
            for v in results["variants"] for source, s in v["by_source"].items()]
    return table(("variant", "source", "items shown", "clicks", "CTR"), rows, "sources")


def report_context(results: dict) -> dict:
    return {"results": results, "chart": over_time_chart(results),
            "variant_table": variant_table(results), "source_table": source_table(results)}
