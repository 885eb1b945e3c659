import os

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from mfplatform.ops.health import check_broker, check_database, check_worker
from mfplatform.ops.metrics import PlatformCollector


@require_GET
def healthz(request):
    database = check_database()
    # The last ping's time lives in the database: with it down, the worker is not judged.
    worker = check_worker() if database["ok"] else {
        "ok": None, "error": "not checked: the database does not answer"}
    parts = {"database": database, "broker": check_broker(), "worker": worker}
    failing = [name for name, result in parts.items() if result["ok"] is False]
    body = {"status": "ok" if not failing else "error", "failing": failing, **parts}
    return JsonResponse(body, status=200 if not failing else 503)


@require_GET
def prometheus_metrics(request):
    """Prometheus text format; no authentication: expose it on an internal network only.
    Under gunicorn (PROMETHEUS_MULTIPROC_DIR set) the sum of every worker's metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    platform = CollectorRegistry()
    platform.register(PlatformCollector())
    return HttpResponse(generate_latest(registry) + generate_latest(platform),
                        content_type=CONTENT_TYPE_LATEST)
