"""JSON errors with a machine-readable code next to DRF's human `detail`."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.db.models import ProtectedError
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

# Seconds a client should wait before retrying while the database is unreachable.
DATABASE_RETRY_AFTER = 5


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """?limit beyond this is served as this: an unbounded limit reached Postgres as an
    out-of-range bigint."""

    max_limit = 1000


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return _non_api_exception(exc)
    data = response.data
    code = getattr(exc, "default_code", "error")
    if isinstance(data, dict) and "detail" in data:
        data.setdefault("code", getattr(data["detail"], "code", code))
    else:
        response.data = {"detail": "Invalid input.", "code": code, "errors": data}
    return response


def _non_api_exception(exc) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        set_rollback()
        return Response({"detail": "The database is unreachable; retry shortly.",
                         "code": "database_unavailable"},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
    if isinstance(exc, RequestDataTooBig):  # a form body over DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": str(exc), "code": "request_too_large"},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):  # e.g. a form body with too many fields
        return Response({"detail": str(exc) or "Invalid request.", "code": "invalid"},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ProtectedError):
        names = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
        return Response({"detail": f"still referred to by {', '.join(names)}; "
                                   f"deactivate it instead", "code": "protected"},
                        status=status.HTTP_409_CONFLICT)
    return None


_ERROR_STATUSES = {"400": "Invalid body, path or query: `errors` names each bad field or row",
                   "401": "Missing, malformed, revoked or expired API key",
                   "403": "The API key lacks the route's scope",
                   "404": "Not found (another tenant's object is a 404 too)",
                   "429": "Too many requests for this API key",
                   "503": "The database is unreachable; retry after Retry-After seconds"}


def add_error_responses(result, generator, request, public):
    """OpenAPI post-processing: every operation documents the shared error shape."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {
        "type": "object", "required": ["detail", "code"],
        "properties": {"detail": {"type": "string"}, "code": {"type": "string"},
                       "errors": {"description": "field or row -> messages (400 only)"}}}
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code, description in _ERROR_STATUSES.items():
                responses.setdefault(code, {
                    "description": description,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}})
    return result
