"""Every request starts and ends with no tenant; the admin's user picks theirs here.

API requests get their tenant from the API key (tenants.auth); admin and report pages from the
logged-in user: operators (superusers) work across tenants, a tenant's member within it.
"""

from __future__ import annotations

from tenants import context
from tenants.models import Membership


def membership_for(user) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    with context.rls_bypass():
        return (Membership.objects.select_related("tenant")
                .filter(user=user, tenant__is_active=True).order_by("created_at").first())


class AdminTenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        context.deactivate()  # whatever a previous request on this thread left
        request.tenant = None
        request.membership = None
        try:
            if not request.path.startswith("/api/"):
                self._scope_for_user(request)
            return self.get_response(request)
        finally:
            context.deactivate()

    @staticmethod
    def _scope_for_user(request) -> None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return
        if user.is_superuser:
            context.activate(None, bypass=True)
            return
        membership = membership_for(user)
        if membership is not None:
            request.membership = membership
            request.tenant = membership.tenant
            context.activate(membership.tenant_id)
