"""The reusable cross-tenant check: every API route, run as tenant A against tenant B's objects.

Each app registers in tests/<app>/cross_tenant_cases.py, for each of its routes, the requests
tenant A's client makes with B's identifiers (`CASES`). The runner (tests/test_cross_tenant.py)
creates B's objects, runs every request as A with an all-scopes key, and asserts: the status
is the expected one (404 for B's objects, never 403), B's marker string never appears in a
response, and every row of B is unchanged afterwards. Another test fails when an /api/v1/
route has no case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tenants.models import Tenant

# Strings planted in tenant B's objects; they must never reach tenant A. B_MARKER goes into
# B's identifiers (A uses them in its requests, and an error may echo A's own input);
# B_SECRET goes into other fields (titles, reports) and A never sends it.
B_MARKER = "bravo-private-7f3a"
B_SECRET = "bravo-secret-91c2"


@dataclass
class Request:
    method: str
    path: str
    body: object = None
    expect: tuple[int, ...] = (404,)


@dataclass
class CrossTenantCase:
    route: str  # the URL name in the "api" namespace, e.g. "api:item-detail"
    # Runs inside tenant B's context with B's tenant; creates B's objects (using B_MARKER in
    # their ids or titles) and returns the requests A will make.
    build: Callable[[Tenant], list[Request]]
    notes: str = ""
    extra_routes: list[str] = field(default_factory=list)


CASES: list[CrossTenantCase] = []


def register(route: str, *extra_routes: str) -> Callable:
    """Decorator: `@register("api:item-detail")` on a builder function."""

    def decorate(build: Callable[[Tenant], list[Request]]):
        CASES.append(CrossTenantCase(route=route, build=build, extra_routes=list(extra_routes)))
        return build

    return decorate
