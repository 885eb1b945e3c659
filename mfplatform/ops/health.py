"""What /healthz checks: the database (with pgvector) and the Celery broker."""

from __future__ import annotations

from django.db import connection

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
