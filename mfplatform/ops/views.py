from django.http import JsonResponse
from django.views.decorators.http import require_GET

from mfplatform.ops.health import check_broker, check_database


@require_GET
def healthz(request):
    parts = {"database": check_database(), "broker": check_broker()}
    failing = [name for name, result in parts.items() if not result["ok"]]
    body = {"status": "ok" if not failing else "error", "failing": failing, **parts}
    return JsonResponse(body, status=200 if not failing else 503)
