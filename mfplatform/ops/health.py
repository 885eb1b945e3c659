"""What /healthz checks: the database (with pgvector), the Celery broker, and whether a
worker answered a ping recently."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.utils import timezone

from mfplatform.celery import app


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension"
                           " WHERE extname = 'vector')")
            version, pgvector = cursor.fetchone()
    except Exception as exc:  # any failure to answer is what this check reports
        connection.close()
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    if pgvector is None:
        return {"ok": False, "server": version.split(",")[0],
                "error": "the pgvector extension is not installed"}
    return {"ok": True, "server": version.split(",")[0], "pgvector": pgvector}


def check_broker() -> dict:
    url = app.conf.broker_url
    transport = url.split("://", 1)[0]
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel  # noqa: B018 - opening a channel proves the broker answers
    except Exception as exc:
        return {"ok": False, "transport": transport,
                "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    return {"ok": True, "transport": transport}


def check_worker() -> dict:
    """A worker answered beat's ping (or any ping) within WORKER_PING_MAX_AGE_SECONDS: the
    answer time is in the database, so every web process sees the same."""
    from mfplatform.ops.models import WorkerPing

    limit = settings.WORKER_PING_MAX_AGE_SECONDS
    try:
        last = WorkerPing.objects.order_by("-received_at").values_list(
            "received_at", flat=True).first()
    except Exception as exc:  # reported, like the database check's own failure
        connection.close()
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    if last is None:
        return {"ok": False, "error": "no worker has ever answered a ping"}
    age = (timezone.now() - last).total_seconds()
    result = {"ok": age <= limit, "last_ping": last.isoformat(), "age_seconds": round(age, 1)}
    if age > limit:
        result["error"] = f"no worker answered a ping in the last {limit:g} s"
    return result
