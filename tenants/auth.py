"""API key authentication, scope permission and per-key throttling for the REST API."""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from prometheus_client import Counter
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from tenants import context
from tenants.models import ApiKey, Tenant, hash_key

# prefix -> (monotonic deadline, key with its tenant). Serving authenticates every call; the
# lookup crosses tenants and goes through the ORM (two round trips), so a verified key is kept
# for API_KEY_CACHE_SECONDS. Saving or deleting a key or its tenant in this process drops it at
# once. A request that reads the database anyway confirms its key in that same round trip
# (`confirm_key`: the tenant's auth_version), as serving does: its keys stay cached while in
# use, and a change made by any process applies to its next request. Other endpoints see a
# change made elsewhere within the cache time. Expiry is checked on every call.
_VERIFIED: dict[str, tuple[float, ApiKey]] = {}
_now = time.monotonic  # the cache's clock (a test moves it)
MAX_CACHED_KEYS = 10_000

AUTH_FAILURES = Counter("mf_auth_failures_total", "API calls refused for their key, per reason",
                        ["reason"])


def _refuse(reason: str, message: str) -> exceptions.AuthenticationFailed:
    AUTH_FAILURES.labels(reason).inc()
    return exceptions.AuthenticationFailed(message)


def _find_key(prefix: str, confirmed_later: bool = False) -> ApiKey | None:
    """The key by its prefix: cached within the cache time, or whatever its age when the
    route confirms it in its own round trip (`confirmed_later`, see confirm_key)."""
    now = _now()
    hit = _VERIFIED.get(prefix)
    if hit is not None and (confirmed_later or hit[0] > now):
        return hit[1]
    # The lookup must cross tenants: the key is what tells us the tenant.
    with context.rls_bypass():
        key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if key is not None and settings.API_KEY_CACHE_SECONDS > 0:
        if len(_VERIFIED) >= MAX_CACHED_KEYS:  # a bound, whatever the number of keys
            _VERIFIED.clear()
        _VERIFIED[prefix] = (now + settings.API_KEY_CACHE_SECONDS, key)
    return key


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def _forget_key(sender, instance: ApiKey, **kwargs) -> None:
    _VERIFIED.pop(instance.prefix, None)


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _forget_tenant_keys(sender, instance: Tenant, **kwargs) -> None:
    _forget_tenant(instance.pk)


def _forget_tenant(tenant_id: int) -> None:
    for prefix, (_deadline, key) in list(_VERIFIED.items()):
        if key.tenant_id == tenant_id:
            _VERIFIED.pop(prefix, None)


def _judge(key: ApiKey) -> None:
    """Refuse a key that no longer opens the API (its secret was checked by the caller)."""
    if key.is_revoked:
        raise _refuse("revoked", "This API key has been revoked.")
    if key.is_expired:
        raise _refuse("expired", "This API key has expired.")
    if not key.tenant.is_active:
        raise _refuse("inactive_tenant", "This tenant is inactive.")


def confirm_key(key: ApiKey | None, auth_version: int | None, scope: str) -> None:
    """The request's key against its tenant's auth_version as the database holds it now (read
    in the request's own round trip; None: no such tenant). Unchanged: the cached key is good
    for another API_KEY_CACHE_SECONDS. Changed (the tenant or any of its keys, by any
    process): the tenant's cached keys are dropped and this one is judged again from the
    database, refused (401, or 403 without `scope`) when it no longer holds."""
    if not isinstance(key, ApiKey):
        return
    if auth_version is not None and auth_version == key.tenant.auth_version:
        hit = _VERIFIED.get(key.prefix)
        if hit is not None and hit[1] is key and settings.API_KEY_CACHE_SECONDS > 0:
            _VERIFIED[key.prefix] = (_now() + settings.API_KEY_CACHE_SECONDS, key)
        return
    _forget_tenant(key.tenant_id)
    fresh = _find_key(key.prefix)
    if fresh is None or not hmac.compare_digest(fresh.hashed_key, key.hashed_key):
        raise _refuse("invalid", "Invalid API key.")
    _judge(fresh)
    if scope not in fresh.scopes:
        raise exceptions.PermissionDenied(f"This API key lacks the '{scope}' scope.")


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` -> (None, ApiKey); the key's tenant becomes the request's
    tenant for the application and for the database session."""

    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword or len(header) != 2:
            raise _refuse("malformed",
                          "Malformed Authorization header: expected 'Bearer <api key>'.")
        raw = header[1].decode(errors="replace")
        prefix = ApiKey.split(raw)
        if prefix is None:
            raise _refuse("invalid", "Invalid API key.")
        # A route that confirms its key (`confirms_api_key`: serving's) takes a cached key
        # of any age: a tenant with little traffic would otherwise pay the lookup on most
        # of its requests, for nothing its own round trip does not check anyway.
        view = (getattr(request, "parser_context", None) or {}).get("view")
        key = _find_key(prefix, confirmed_later=getattr(view, "confirms_api_key", False))
        if key is None or not hmac.compare_digest(key.hashed_key, hash_key(raw)):
            raise _refuse("invalid", "Invalid API key.")
        _judge(key)
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
            AUTH_FAILURES.labels("missing").inc()
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
    """At most `num_requests` per key in each fixed window of `duration` seconds, counted in
    the cache (one increment per call, shared by all processes when the cache is Redis).
    DRF's sliding window stores every call's timestamp and rewrites the list on each call,
    which at serving rates costs more than the request."""

    scope = "api_key"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
        return None

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.wait_seconds = (window + 1) * self.duration - now
        key = f"{ident}:{window}"
        cache.add(key, 0, timeout=self.duration + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr: this call opens the window
            cache.set(key, 1, timeout=self.duration + 1)
            count = 1
        return count <= self.num_requests

    def wait(self) -> float:
        return self.wait_seconds
