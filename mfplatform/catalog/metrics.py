"""Ingestion metrics in Prometheus format (GET /metrics), labelled by tenant and row kind:
what the REST batches stored, what was a duplicate, what was refused and what was not stored
because another row of an all-or-nothing batch was bad."""

from __future__ import annotations

from prometheus_client import Counter

from mfplatform.catalog.ingest import IngestResult

ROWS = Counter("mf_ingest_rows_total", "Rows received by the ingestion API, per outcome",
               ["tenant", "kind", "outcome"])
BATCHES = Counter("mf_ingest_batches_total", "Ingestion API batches, per outcome",
                  ["tenant", "kind", "outcome"])


def record_batch(tenant: str, kind: str, n_rows: int, result: IngestResult) -> None:
    rejected = result.rejected_rows
    counts = {"rejected": rejected, "duplicate": result.duplicates}
    if result.written:
        counts["stored"] = result.created + result.updated
    else:
        counts["discarded"] = max(n_rows - rejected - result.duplicates, 0)
    for outcome, count in counts.items():
        if count:
            ROWS.labels(tenant, kind, outcome).inc(count)
    BATCHES.labels(tenant, kind, "stored" if result.written else "refused").inc()
