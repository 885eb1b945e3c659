"""One check for input Postgres cannot store or Python cannot walk, before any view runs.

Postgres text and jsonb refuse NUL, and a lone surrogate (JSON "\\ud800") cannot be encoded
as UTF-8: either one used to become a 500 deep inside a write. Nesting thousands of levels
deep overflows the JSON decoder and every recursive walk after it. The parsers below and the
middleware (URL path and query string) turn each into a 400 naming the field or row, so
serializers and services only ever see storable text.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import JsonResponse
from rest_framework import serializers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

# Deeper than any real payload (attributes, plan configs), far below the interpreter's limit.
MAX_DEPTH = 32


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def find_problem(value: Any) -> tuple[str, str] | None:
    """(path, reason) of the first unstorable string, key or too-deep nesting in a parsed
    JSON value; walked without recursion. Paths read like `[3].attributes.colour`."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            reason = text_problem(node)
            if reason:
                return path or "body", reason
        elif isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                return path or "body", f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(node, dict):
                for key, child in node.items():
                    child_path = f"{path}.{key}" if path else str(key)
                    reason = text_problem(key)
                    if reason:
                        return (path or "body"), f"a key {reason}"
                    stack.append((child, child_path, depth + 1))
            else:
                for index, child in enumerate(node):
                    stack.append((child, f"{path}[{index}]", depth + 1))
    return None


def check_value(value: Any) -> Any:
    """`value` itself, or a 400 ValidationError naming the bad field."""
    problem = find_problem(value)
    if problem is not None:
        raise ValidationError({problem[0]: [problem[1]]})
    return value


def loads(raw: bytes | str, **kwargs: Any) -> Any:
    """json.loads with nesting overflow as a ParseError and unstorable text as a 400."""
    try:
        value = json.loads(raw, **kwargs)
    except RecursionError as exc:
        raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels") from exc
    return check_value(value)


class GuardedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            value = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_DEPTH} levels") from exc
        return check_value(value)


class StorableJSONField(serializers.JSONField):
    """A JSON value that Postgres can store. A form-encoded field is JSON text decoded here,
    after the parser looked at it, so the same checks run again; `objects_only` refuses
    anything but a JSON object (null included)."""

    def __init__(self, *args, objects_only: bool = False, **kwargs):
        self.objects_only = objects_only
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data):
        try:
            value = super().to_internal_value(data)
        except RecursionError as exc:
            raise serializers.ValidationError(f"nested deeper than {MAX_DEPTH} levels") from exc
        if self.objects_only and not isinstance(value, dict):
            raise serializers.ValidationError("expected a JSON object")
        problem = find_problem(value)
        if problem is not None:
            path, reason = problem
            raise serializers.ValidationError(reason if path == "body" else f"{path}: {reason}")
        return value


class _GuardedFormMixin:
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        data = getattr(parsed, "data", parsed)
        for key, values in data.lists():
            for value in [key, *values]:
                reason = text_problem(value) if isinstance(value, str) else None
                if reason:
                    raise ValidationError({key: [reason]})
        return parsed


class GuardedFormParser(_GuardedFormMixin, FormParser):
    pass


class GuardedMultiPartParser(_GuardedFormMixin, MultiPartParser):
    pass


class UrlInputGuardMiddleware:
    """API URLs: a NUL in the path or a query parameter is a 400 JSON error naming it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            refused = self._refusal(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    @staticmethod
    def _refusal(request) -> JsonResponse | None:
        reason = text_problem(request.path)
        if reason:
            return _bad_request("path", reason)
        for key, values in request.GET.lists():
            for value in [key, *values]:
                reason = text_problem(value)
                if reason:
                    return _bad_request(key, reason)
        return None


def _bad_request(field: str, reason: str) -> JsonResponse:
    return JsonResponse({"detail": "Invalid input.", "code": "invalid",
                         "errors": {field: [reason]}}, status=400)
