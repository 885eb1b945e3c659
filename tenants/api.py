"""The one tenant-scoped base for REST views: every queryset is the request's tenant's."""

from __future__ import annotations

from rest_framework import generics, viewsets
from rest_framework.exceptions import NotAuthenticated


def request_tenant(request):
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        raise NotAuthenticated("An API key is required: 'Authorization: Bearer <key>'.")
    return tenant


class TenantScopedMixin:
    """Set `model` and `required_scope`; lists, details, updates and deletes all go through
    `get_queryset`, so another tenant's object is a 404 and a list never shows it. New rows
    get the request's tenant in `perform_create`; serializers never accept one."""

    model = None
    required_scope: str | dict | None = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request tenant
            return self.model.objects.none()
        tenant = request_tenant(self.request)
        return self.model.objects.filter(tenant=tenant)

    def perform_create(self, serializer):
        serializer.save(tenant=request_tenant(self.request))

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["tenant"] = getattr(self.request, "tenant", None)
        return context


class TenantScopedViewSet(TenantScopedMixin, viewsets.ModelViewSet):
    pass


class TenantScopedGenericAPIView(TenantScopedMixin, generics.GenericAPIView):
    pass


class TenantRelatedField:
    """Mixin for serializer fields resolving client-given references inside the tenant only."""

    def get_queryset(self):
        tenant = self.context.get("tenant")
        base = super().get_queryset()
        if tenant is None:
            return base.none()
        return base.filter(tenant=tenant)
