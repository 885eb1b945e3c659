"""Tenants, their members and their API keys; the base every tenant-owned model inherits."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models
from django.utils import timezone

from tenants.context import bypass_active, current_tenant_id

SCOPES = ("ingest", "recommend", "manage")


class Tenant(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    # Quotas and switches, e.g. {"allow_placeholder_items": true, "max_batch_size": 10000}.
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Advanced by the database (a trigger, migration 0003) on every update of this row and
    # every change of one of its keys: a process that cached a key knows it is still as read
    # when this has not moved (tenants.auth.confirm_key).
    auth_version = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def setting(self, name: str, default=None):
        return (self.settings or {}).get(name, default)


class TenantScopedManager(models.Manager):
    """Fails closed: rows of the current tenant only, none when no tenant is set.

    Operators' cross-tenant work runs inside `rls_bypass()`, which lifts this filter and the
    database policy together.
    """

    def get_queryset(self):
        queryset = super().get_queryset()
        if bypass_active():
            return queryset
        tenant_id = current_tenant_id()
        if tenant_id is None:
            return queryset.none()
        return queryset.filter(tenant_id=tenant_id)


class TenantOwned(models.Model):
    """Every tenant-owned row carries its tenant; its table gets a row-level security policy
    (tenants.rls.enable_rls in the app's migration; a test checks none is forgotten)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")

    objects = TenantScopedManager()

    class Meta:
        abstract = True


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    ANALYST = "analyst", "Analyst"


class Membership(TenantOwned):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"],
                                               name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} as {self.role}"

    @property
    def can_configure(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


def hash_key(raw_key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(TenantOwned):
    PREFIX_LENGTH = 8

    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=[(s, s) for s in SCOPES]),
                        default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, tenant: Tenant, scopes, name: str = "default",
              expires_at=None) -> tuple[ApiKey, str]:
        """Create a key; the raw key is returned once and never stored."""
        unknown = set(scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {list(SCOPES)}")
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        raw = f"mf_{prefix}_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(tenant=tenant, name=name, prefix=prefix,
                                 hashed_key=hash_key(raw), scopes=sorted(set(scopes)),
                                 expires_at=expires_at)
        return key, raw

    @staticmethod
    def split(raw: str) -> str | None:
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "mf":
            return None
        return parts[1]

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])

    def touch(self) -> None:
        """Record use, at most once a minute, so that serving does not write on every call."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at > timedelta(minutes=1):
            # A plain statement: the ORM's update compiled a query each time, ~0.6 ms, and
            # traffic over hundreds of tenants pays it for every key every minute.
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {ApiKey._meta.db_table} SET last_used_at = %s "
                               f"WHERE id = %s AND tenant_id = %s",
                               [now, self.pk, self.tenant_id])
            self.last_used_at = now
