"""Answers for /api/ paths that name no route: JSON like every other API error, not HTML."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt  # API clients send no CSRF token: a POST to no route is a JSON 404, not a 403
def unknown_route(request: HttpRequest, path: str = "") -> JsonResponse:
    detail = f"No API route {request.path}."
    # Routes have no trailing slash; say so when that is the only difference.
    if request.path.endswith("/") and len(request.path) > 1:
        try:
            resolve(request.path.rstrip("/"))
        except Resolver404:
            pass
        else:
            detail += f" Did you mean {request.path.rstrip('/')} (no trailing slash)?"
    return JsonResponse({"detail": detail, "code": "not_found"}, status=404)
