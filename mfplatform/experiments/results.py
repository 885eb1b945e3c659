"""An experiment's results per variant and per source, with the statistics that call a
winner.

Attribution is computed here, when results are asked for, by a join of events to impressions,
rather than at ingestion: ingestion stays one COPY with no per-row lookup (events are the
biggest table), an impression is written up to IMPRESSION_FLUSH_SECONDS after its response
(so an event may arrive before it), and a tenant that changes its window sees every result
recomputed with it. An event is attributed to
- the impression its `recommendation_id` names, when that response showed the event's item;
- else, when it has no recommendation_id, the latest impression (any surface) that showed the
  same user the same item at most the tenant's `attribution_window_hours` (default 24) before;
- else to nothing (an unknown recommendation_id included).
It counts for the experiment when that impression belongs to it.

Statistics (a response is the unit: it was clicked, or converted, or not):
- proportions get Wilson score 95% intervals (scipy's binomtest);
- each variant's CTR is compared with the control's by a pooled two-proportion z-test
  (two-sided); the p-values of the variants are corrected for multiple comparisons by Holm's
  step-down method (p-values sorted ascending, the i-th of m multiplied by m - i + 1, made
  monotone, capped at 1), which keeps the family-wise error rate at alpha;
- no winner is called before every variant has `min_samples` impressions. Then the winner is
  the variant with the highest CTR among those significantly better than the control; the
  control wins when every other variant is significantly worse; else there is none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
from django.db import connection
from django.utils import timezone

from mfplatform.catalog.models import EventKind
from mfplatform.experiments.models import Experiment
from tenants.models import Tenant

DEFAULT_WINDOW_HOURS = 24
LONG_TAIL_HEAD_SHARE = 0.2  # the most-interacted 20% of the catalogue is the head
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ShownResponse:
    id: int
    variant: str
    items: Sequence[int]
    sources: Sequence[str]
    latency_ms: float
    fallback: bool
    day: date


@dataclass(frozen=True)
class AttributedEvent:
    impression_id: int
    item_id: int
    event_type: str
    kind: str  # positive, negative, policy


@dataclass
class Design:
    """What the statistics need of the experiment."""

    variants: list[str]
    control: str
    click_event: str = "click"
    min_samples: int = 1000
    alpha: float = 0.05
    head_items: frozenset[int] = field(default_factory=frozenset)
    catalogue_size: int = 0


def _stats():
    # scipy.stats costs about a second to import; only results need it, not every command
    # and web worker that imports this module at admin autodiscovery.
    from scipy import stats

    return stats


def wilson(successes: int, trials: int) -> list[float] | None:
    if trials == 0:
        return None
    interval = _stats().binomtest(successes, trials).proportion_ci(CONFIDENCE, method="wilson")
    return [float(interval.low), float(interval.high)]


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) of p1 - p2 with the pooled standard error; (0, 1) when undefined."""
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return float(z), float(2 * _stats().norm.sf(abs(z)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _rate(count: int, total: int) -> float | None:
    return None if total == 0 else count / total


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3)}


def _variant_numbers(design: Design, shown: list[ShownResponse],
                     events: dict[int, list[AttributedEvent]]) -> dict:
    n = len(shown)
    clicked = conversions = 0
    by_type: dict[str, int] = defaultdict(int)
    hidden = reported = 0
    slots = long_tail = 0
    distinct: set[int] = set()
    sources: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # shown, clicked
    for response in shown:
        got = events.get(response.id, ())
        clicked_items = {e.item_id for e in got if e.event_type == design.click_event}
        clicked += bool(clicked_items)
        types = {e.event_type for e in got if e.kind == EventKind.POSITIVE
                 and e.event_type != design.click_event}
        for name in types:
            by_type[name] += 1
        conversions += bool(types)
        hidden += any(e.kind == EventKind.NEGATIVE for e in got)
        reported += any(e.kind == EventKind.POLICY for e in got)
        slots += len(response.items)
        distinct.update(response.items)
        long_tail += sum(item not in design.head_items for item in response.items)
        for item, source in zip(response.items, response.sources, strict=False):
            sources[source][0] += 1
            sources[source][1] += item in clicked_items
    return {
        "impressions": n, "items_shown": slots, "clicked": clicked,
        "ctr": _rate(clicked, n), "ctr_ci": wilson(clicked, n),
        "conversion": {name: {"responses": count, "rate": _rate(count, n),
                              "ci": wilson(count, n)} for name, count in sorted(by_type.items())},
        "any_conversion_rate": _rate(conversions, n),
        "hide_rate": _rate(hidden, n), "report_rate": _rate(reported, n),
        "fallback_rate": _rate(sum(r.fallback for r in shown), n),
        "empty_rate": _rate(sum(not r.items for r in shown), n),
        "latency_ms": _percentiles([r.latency_ms for r in shown]),
        "long_tail_share": _rate(long_tail, slots),
        "coverage": _rate(len(distinct), design.catalogue_size),
        "by_source": {source: {"items_shown": s, "clicks": c, "ctr": _rate(c, s)}
                      for source, (s, c) in sorted(sources.items())},
    }


def _verdict(design: Design, numbers: dict[str, dict]) -> tuple[str | None, str]:
    short = [v for v in design.variants if numbers[v]["impressions"] < design.min_samples]
    if short:
        return None, (f"not enough impressions yet ({', '.join(short)} below "
                      f"{design.min_samples}): no winner is called")
    control = numbers[design.control]
    others = [v for v in design.variants if v != design.control]
    better = [v for v in others if numbers[v]["vs_control"]["significant"]
              and numbers[v]["ctr"] > control["ctr"]]
    if better:
        winner = max(better, key=lambda v: numbers[v]["ctr"])
        return winner, (f"{winner}'s CTR is significantly higher than the control's "
                        f"(Holm-adjusted p < {design.alpha})")
    if others and all(numbers[v]["vs_control"]["significant"]
                      and numbers[v]["ctr"] < control["ctr"] for v in others):
        return design.control, "every variant's CTR is significantly lower than the control's"
    return None, f"no significant difference in CTR at alpha {design.alpha}"


def compute_results(design: Design, shown: Sequence[ShownResponse],
                    events: Sequence[AttributedEvent]) -> dict:
    """The results of already attributed data (no database: the benchmark's A/A runs call
    it on simulated responses)."""
    per_variant: dict[str, list[ShownResponse]] = {v: [] for v in design.variants}
    for response in shown:
        per_variant.setdefault(response.variant, []).append(response)
    by_impression: dict[int, list[AttributedEvent]] = defaultdict(list)
    for event in events:
        by_impression[event.impression_id].append(event)
    numbers = {v: _variant_numbers(design, rows, by_impression)
               for v, rows in per_variant.items()}
    control = numbers[design.control]
    others = [v for v in design.variants if v != design.control]
    tests = [two_proportion_z(numbers[v]["clicked"], numbers[v]["impressions"],
                              control["clicked"], control["impressions"]) for v in others]
    adjusted = holm([p for _z, p in tests]) if tests else []
    control["vs_control"] = None
    for v, (z, p), p_adj in zip(others, tests, adjusted, strict=True):
        numbers[v]["vs_control"] = {
            "ctr_difference": (None if numbers[v]["ctr"] is None or control["ctr"] is None
                               else numbers[v]["ctr"] - control["ctr"]),
            "z": z, "p_value": p, "p_adjusted": p_adj, "significant": p_adj < design.alpha}
    winner, reason = _verdict(design, numbers)
    return {
        "variants": [{"variant": v, "control": v == design.control, **numbers[v]}
                     for v in design.variants],
        "winner": winner, "reason": reason,
        "method": {"unit": "response", "test": "two-proportion z-test (pooled, two-sided) "
                   "of CTR vs the control", "correction": "holm", "alpha": design.alpha,
                   "intervals": "wilson 95%", "min_samples": design.min_samples},
        "daily": _daily(shown, by_impression, design.click_event),
    }


def _daily(shown: Sequence[ShownResponse], events: dict[int, list[AttributedEvent]],
           click_event: str) -> list[dict]:
    counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for response in shown:
        entry = counts[(response.day, response.variant)]
        entry[0] += 1
        entry[1] += any(e.event_type == click_event for e in events.get(response.id, ()))
    return [{"day": day.isoformat(), "variant": variant, "impressions": n, "clicked": c,
             "ctr": _rate(c, n)} for (day, variant), (n, c) in sorted(counts.items())]


# The database side: one experiment's impressions, its attributed events, the catalogue.

_ATTRIBUTED_SQL = """
WITH ev AS (
  SELECT e.user_id, e.item_id, e.timestamp, e.recommendation_id, t.name, t.kind
    FROM catalog_event e JOIN catalog_eventtype t ON t.id = e.event_type_id
   WHERE e.tenant_id = %(tenant)s AND e.timestamp >= %(start)s AND e.timestamp <= %(end)s
     AND e.user_id IN (SELECT DISTINCT user_id FROM experiments_impression
                        WHERE tenant_id = %(tenant)s AND experiment_id = %(experiment)s
                          AND user_id IS NOT NULL)
)
SELECT a.id, ev.item_id, ev.name, ev.kind
  FROM ev CROSS JOIN LATERAL (
    (SELECT i.id, i.experiment_id FROM experiments_impression i
      WHERE ev.recommendation_id IS NOT NULL AND i.tenant_id = %(tenant)s
        AND i.recommendation_id = ev.recommendation_id AND ev.item_id = ANY(i.items)
      LIMIT 1)
    UNION ALL
    (SELECT i.id, i.experiment_id FROM experiments_impression i
      WHERE ev.recommendation_id IS NULL AND i.tenant_id = %(tenant)s
        AND i.user_id = ev.user_id AND ev.item_id = ANY(i.items)
        AND i.created_at <= ev.timestamp AND i.created_at > ev.timestamp - %(window)s
      ORDER BY i.created_at DESC LIMIT 1)
  ) a
 WHERE a.experiment_id = %(experiment)s
"""

_HEAD_SQL = """
SELECT item_id FROM catalog_event WHERE tenant_id = %(tenant)s
 GROUP BY item_id ORDER BY count(*) DESC LIMIT %(limit)s
"""


def attribution_window(tenant: Tenant) -> timedelta:
    return timedelta(hours=float(tenant.setting("attribution_window_hours",
                                                DEFAULT_WINDOW_HOURS)))


def design_of(tenant: Tenant, experiment: Experiment) -> Design:
    variants = list(experiment.variants.all())
    control = next((v.name for v in variants if v.is_control), variants[0].name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM catalog_item WHERE tenant_id = %s "
                       "AND deleted_at IS NULL AND NOT is_placeholder", [tenant.pk])
        catalogue = cursor.fetchone()[0]
        cursor.execute(_HEAD_SQL, {"tenant": tenant.pk,
                                   "limit": int(np.ceil(catalogue * LONG_TAIL_HEAD_SHARE))})
        head = frozenset(row[0] for row in cursor.fetchall())
    return Design(variants=[v.name for v in variants], control=control,
                  click_event=experiment.click_event, min_samples=experiment.min_samples,
                  alpha=experiment.alpha, head_items=head, catalogue_size=catalogue)


def experiment_results(tenant: Tenant, experiment: Experiment,
                       now: datetime | None = None) -> dict:
    """The experiment's results as stored now (impressions already written)."""
    design = design_of(tenant, experiment)
    window = attribution_window(tenant)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, variant, items, sources, latency_ms, fallback, created_at "
            "FROM experiments_impression WHERE tenant_id = %s AND experiment_id = %s",
            [tenant.pk, experiment.pk])
        shown = [ShownResponse(pk, variant, items, sources, latency, fallback,
                               timezone.localdate(created))
                 for pk, variant, items, sources, latency, fallback, created
                 in cursor.fetchall()]
        events: list[AttributedEvent] = []
        if experiment.started_at is not None:
            end = (experiment.stopped_at or now or timezone.now()) + window
            cursor.execute(_ATTRIBUTED_SQL, {
                "tenant": tenant.pk, "experiment": experiment.pk, "window": window,
                "start": experiment.started_at, "end": end})
            events = [AttributedEvent(*row) for row in cursor.fetchall()]
    results = compute_results(design, shown, events)
    return {"experiment": experiment.pk, "name": experiment.name,
            "status": experiment.status, "surface": experiment.surface,
            "attribution_window_hours": window.total_seconds() / 3600, **results}
