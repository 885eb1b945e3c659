"""Cross-tenant cases of every /api/v1/ route. Add yours here when you add a route."""

from tests.cross_tenant import B_MARKER, Request, register


@register("api:tenant")
def _whoami(tenant_b):
    # The route takes no identifier: A's answer must name A, never B.
    return [Request("GET", "/api/v1/tenant", expect=(200,))]


assert B_MARKER
