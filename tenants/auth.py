"""API key authentication, scope permission and per-key throttling for the REST API."""

from __future__ import annotations

from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from tenants import context
from tenants.models import ApiKey, hash_key


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` -> (None, ApiKey); the key's tenant becomes the request's
    tenant for the application and for the database session."""

    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword or len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <api key>'.")
        raw = header[1].decode(errors="replace")
        prefix = ApiKey.split(raw)
        if prefix is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        # The lookup must cross tenants: the key is what tells us the tenant.
        with context.rls_bypass():
            key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
        if key is None or key.hashed_key != hash_key(raw):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if key.is_revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if key.is_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        if not key.tenant.is_active:
            raise exceptions.AuthenticationFailed("This tenant is inactive.")
        context.activate(key.tenant_id)
        request.tenant = key.tenant
        key.touch()
        return (None, key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class HasTenantScope(permissions.BasePermission):
    """Views name the scope they need in `required_scope`; a view without one is refused."""

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated(
                "An API key is required: 'Authorization: Bearer <key>'.")
        scope = getattr(view, "required_scope", None)
        if isinstance(scope, dict):
            scope = scope.get(request.method, scope.get("*"))
        if scope == "any":
            return True
        if scope is None or scope not in key.scopes:
            self.message = (f"This API key lacks the '{scope}' scope "
                            f"(it has: {', '.join(key.scopes) or 'none'}).")
            return False
        return True


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
        return None
