"""Impression logging metrics (GET /metrics)."""

from prometheus_client import Counter

WRITTEN = Counter("mf_impressions_written_total", "Impressions written to Postgres")
DROPPED = Counter("mf_impressions_dropped_total", "Impressions not written, by reason",
                  ["reason"])
