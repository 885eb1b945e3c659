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

from mfplatform.ops.health import check_broker, check_database
from mfplatform.ops.metrics import PlatformCollector


@require_GET
def healthz(request):
    parts = {"database": check_database(), "broker": check_broker()}
    failing = [name for name, result in parts.items() if not result["ok"]]
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
