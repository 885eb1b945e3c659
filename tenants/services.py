"""Creating tenants and keys: used by the management commands, the admin and the demo."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from tenants.context import tenant_context
from tenants.models import SCOPES, ApiKey, Membership, Role, Tenant


def parse_scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise ValueError(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}; "
                         f"got {text!r}")
    return scopes


@transaction.atomic
def create_tenant(slug: str, name: str | None = None, admin_email: str | None = None,
                  admin_password: str | None = None) -> tuple[Tenant, str]:
    """A new tenant with an all-scopes API key (returned raw, once) and optionally its admin."""
    tenant = Tenant.objects.create(slug=slug, name=name or slug)
    with tenant_context(tenant):
        _key, raw = ApiKey.issue(tenant, SCOPES, name="initial")
        if admin_email:
            add_member(tenant, admin_email, Role.OWNER, password=admin_password)
    return tenant, raw


def add_member(tenant: Tenant, email: str, role: str, password: str | None = None) -> Membership:
    users = get_user_model()
    user, created = users.objects.get_or_create(username=email, defaults={"email": email})
    if not user.is_staff:  # staff is what lets a tenant's member into the admin site
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if password:
        user.set_password(password)
        user.save(update_fields=["password"])
    elif created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    with tenant_context(tenant):
        membership, _ = Membership.objects.update_or_create(
            tenant=tenant, user=user, defaults={"role": role})
    return membership


def create_api_key(tenant: Tenant, scopes: list[str], name: str = "default",
                   expires_at=None) -> tuple[ApiKey, str]:
    with tenant_context(tenant):
        return ApiKey.issue(tenant, scopes, name=name, expires_at=expires_at)
