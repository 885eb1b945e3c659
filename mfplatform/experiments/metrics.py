"""Impression logging metrics (GET /metrics).

Only labelled series: an unlabelled counter opens its multiprocess file when the module is
imported, before gunicorn has made PROMETHEUS_MULTIPROC_DIR (`manage.py serve` imports the URLs
for its checks first); a labelled one opens it at the first `.labels()`, in a worker."""

from prometheus_client import Counter

WRITTEN = Counter("mf_impressions_written_total", "Impressions written to Postgres, by surface",
                  ["surface"])
DROPPED = Counter("mf_impressions_dropped_total", "Impressions not written, by reason",
                  ["reason"])
