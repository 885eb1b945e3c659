"""Serving metrics in Prometheus format (GET /metrics), labelled by tenant.

Under gunicorn every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (set by
mfplatform/gunicorn_conf.py) and GET /metrics reports their sum; elsewhere (tests, shell) the
process's own registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("mf_serving_requests_total", "Serving requests",
                   ["tenant", "endpoint", "status"])
LATENCY = Histogram("mf_serving_latency_seconds", "Serving latency", ["tenant", "endpoint"],
                    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
FILTERED = Counter("mf_serving_filtered_total", "Candidates removed, per rule",
                   ["tenant", "rule"])
SOURCES = Counter("mf_serving_items_total", "Items served, per source", ["tenant", "source"])
FALLBACKS = Counter("mf_serving_fallback_responses_total",
                    "Responses that needed a fallback source", ["tenant"])
EMPTY = Counter("mf_serving_empty_responses_total", "Responses with no items", ["tenant"])


def record_response(tenant: str, selector, fallback_used: bool) -> None:
    for rule, count in selector.filtered.items():
        FILTERED.labels(tenant, rule).inc(count)
    sources: dict[str, int] = {}
    for pick in selector.picks:
        sources[pick.source] = sources.get(pick.source, 0) + 1
    for source, count in sources.items():
        SOURCES.labels(tenant, source).inc(count)
    if fallback_used:
        FALLBACKS.labels(tenant).inc()
    if not selector.picks:
        EMPTY.labels(tenant).inc()
