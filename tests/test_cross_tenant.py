"""Runs every registered cross-tenant case; fails when a route has no case."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
from django.apps import apps
from django.core import serializers
from django.urls import URLPattern, URLResolver, get_resolver

import tests
from tenants.context import tenant_context
from tenants.models import TenantOwned
from tests.cross_tenant import B_MARKER, B_SECRET, CASES


def _load_cases() -> None:
    """Import every tests/<app>/cross_tenant_cases.py: importing registers its cases."""
    for module in pkgutil.walk_packages(tests.__path__, "tests."):
        if module.name.endswith(".cross_tenant_cases"):
            importlib.import_module(module.name)


_load_cases()


def _api_route_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and namespace == "api" and pattern.name:
                names.add(f"api:{pattern.name}")

    walk(get_resolver().url_patterns, None)
    return names


def test_every_api_route_has_a_cross_tenant_case():
    covered = {case.route for case in CASES} | {r for case in CASES for r in case.extra_routes}
    missing = sorted(_api_route_names() - covered)
    assert not missing, f"routes without a case in tests/<app>/cross_tenant_cases.py: {missing}"


def _snapshot(tenant) -> str:
    """Every row tenant B owns, serialised: compared before and after A's requests."""
    rows = []
    with tenant_context(tenant):
        for model in apps.get_models():
            if issubclass(model, TenantOwned):
                queryset = model.objects.filter(tenant=tenant).order_by("pk")
                rows.append(serializers.serialize("json", queryset))
    return "\n".join(rows)


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.route)
def test_tenant_a_cannot_reach_tenant_b(case, tenant_a, tenant_b):
    with tenant_context(tenant_b.tenant):
        requests = case.build(tenant_b.tenant)
    before = _snapshot(tenant_b.tenant)
    client = tenant_a.client()
    assert requests, "a case must make at least one request"
    for request in requests:
        body = json.dumps(request.body) if request.body is not None else None
        response = getattr(client, request.method.lower())(
            request.path, data=body, content_type="application/json")
        label = f"{request.method} {request.path}"
        assert response.status_code in request.expect, (
            f"{label}: {response.status_code} {response.content[:300]!r}")
        assert response.status_code != 403, f"{label}: 403 confirms B's object exists"
        # A response may echo what A itself sent (an error naming an unknown id), but never
        # the secret B keeps in its rows' other fields.
        content = response.content.decode(errors="replace")
        assert B_SECRET not in content, f"{label} leaked B's data"
        if B_MARKER not in request.path + (body or ""):
            assert B_MARKER not in content, f"{label} leaked B"
    assert _snapshot(tenant_b.tenant) == before, "tenant A's requests changed tenant B's rows"
