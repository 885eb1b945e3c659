"""Admin for operators (all tenants) and tenant admins/analysts (their tenant only).

`TenantScopedAdmin` is the base of every tenant-owned model's admin: lists, detail pages,
foreign-key pickers and actions only ever see the member's tenant; the tenant field is set
server-side for members and offered only to operators.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models

from tenants.models import ApiKey, Membership, Role, Tenant, TenantOwned


def is_operator(request) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


def member_tenant(request):
    return getattr(request, "tenant", None)


class TenantScopedAdmin(admin.ModelAdmin):
    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if is_operator(request):
            return queryset
        tenant = member_tenant(request)
        return queryset.filter(tenant=tenant) if tenant is not None else queryset.none()

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not is_operator(request):
            exclude.append("tenant")
        return exclude

    def get_fields(self, request, obj=None):
        # An admin listing its `fields` explicitly names the tenant, which members never get.
        fields = list(super().get_fields(request, obj))
        return fields if is_operator(request) else [f for f in fields if f != "tenant"]

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if is_operator(request):
            filters.insert(0, "tenant")
        return filters

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if not is_operator(request) and issubclass(related, TenantOwned):
            tenant = member_tenant(request)
            kwargs["queryset"] = (related.objects.filter(tenant=tenant)
                                  if tenant is not None else related.objects.none())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        related = db_field.related_model
        if not is_operator(request) and issubclass(related, TenantOwned):
            tenant = member_tenant(request)
            kwargs["queryset"] = (related.objects.filter(tenant=tenant)
                                  if tenant is not None else related.objects.none())
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not is_operator(request):
            obj.tenant = member_tenant(request)
        super().save_model(request, obj, form, change)

    # Permissions come from the membership role, not from Django's per-model permissions.
    def _membership(self, request):
        return getattr(request, "membership", None)

    def has_module_permission(self, request):
        return is_operator(request) or self._membership(request) is not None

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def _can_configure(self, request) -> bool:
        if is_operator(request):
            return True
        membership = self._membership(request)
        return membership is not None and membership.can_configure

    def has_add_permission(self, request):
        return self._can_configure(request)

    def has_change_permission(self, request, obj=None):
        return self._can_configure(request)

    def has_delete_permission(self, request, obj=None):
        return self._can_configure(request)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "is_active", "created_at")
    search_fields = ("slug", "name")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if is_operator(request):
            return queryset
        tenant = member_tenant(request)
        return queryset.filter(pk=tenant.pk) if tenant is not None else queryset.none()

    def has_module_permission(self, request):
        return is_operator(request) or getattr(request, "membership", None) is not None

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return is_operator(request)

    def has_change_permission(self, request, obj=None):
        return is_operator(request)

    def has_delete_permission(self, request, obj=None):
        return is_operator(request)


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    autocomplete_fields = ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not is_operator(request):
            tenant = member_tenant(request)
            users = db_field.related_model.objects.filter(memberships__tenant=tenant)
            kwargs["queryset"] = users if tenant is not None else users.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _can_configure(self, request) -> bool:
        membership = self._membership(request)
        return is_operator(request) or (membership is not None and membership.role == Role.OWNER)


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    list_display = ("name", "prefix", "tenant", "scopes", "created_at", "expires_at",
                    "revoked_at", "last_used_at")
    readonly_fields = ("prefix", "last_used_at", "revoked_at")
    fields = ("tenant", "name", "scopes", "expires_at", "prefix", "revoked_at", "last_used_at")
    actions = ["revoke_keys"]
    formfield_overrides = {models.JSONField: {}}

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        tenant = obj.tenant if is_operator(request) else member_tenant(request)
        key, raw = ApiKey.issue(tenant, obj.scopes, name=obj.name, expires_at=obj.expires_at)
        obj.pk = key.pk
        obj.prefix, obj.hashed_key, obj.tenant = key.prefix, key.hashed_key, tenant
        messages.warning(request, f"New API key (copy it now, it is shown only once): {raw}")

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()
