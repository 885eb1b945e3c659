"""Serving metrics in Prometheus format (GET /metrics), labelled by tenant.

Under gunicorn every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (set by
mfplatform/gunicorn_conf.py) and GET /metrics reports their sum; elsewhere (tests, shell) the
process's own registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
# The per-process serving cache (serving/cache.py), by kind of entry: bundle (a version's
# item-side data), version (its row), active (a tenant's last active version).
CACHE_HITS = Counter("mf_serving_cache_hits_total", "Serving cache hits", ["kind"])
CACHE_MISSES = Counter("mf_serving_cache_misses_total", "Serving cache misses (loads)", ["kind"])
CACHE_EVICTIONS = Counter("mf_serving_cache_evictions_total",
                          "Entries evicted from the serving cache (least recently used)",
                          ["kind"])
CACHE_OVERSIZE = Counter("mf_serving_cache_oversize_total",
                         "Loads served but not kept: larger than the whole cache budget",
                         ["kind"])
CACHE_BYTES = Gauge("mf_serving_cache_bytes", "Bytes held by the serving cache, per process",
                    ["kind"], multiprocess_mode="liveall")
CACHE_ENTRIES = Gauge("mf_serving_cache_entries", "Entries in the serving cache, per process",
                      ["kind"], multiprocess_mode="liveall")


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
