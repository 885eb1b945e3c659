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


_ERROR_STATUSES = {"400": "Invalid input: `errors` names each bad field or row",
                   "401": "Missing, malformed, revoked or expired API key",
                   "403": "The API key lacks the route's scope",
                   "404": "Not found (another tenant's object is a 404 too)",
                   "429": "Too many requests for this API key"}


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
            for status, description in _ERROR_STATUSES.items():
                if status == "400" and "requestBody" not in operation:
                    continue
                responses.setdefault(status, {
                    "description": description,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}})
    return result
