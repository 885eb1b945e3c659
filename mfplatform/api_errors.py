"""JSON errors with a machine-readable code next to DRF's human `detail`."""

from __future__ import annotations

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    code = getattr(exc, "default_code", "error")
    if isinstance(data, dict) and "detail" in data:
        data.setdefault("code", getattr(data["detail"], "code", code))
    else:
        response.data = {"detail": "Invalid input.", "code": code, "errors": data}
    return response
