from django.contrib import admin

from mfplatform.catalog.ingest import delete_end_user
from mfplatform.catalog.models import EndUser, Event, EventType, Item, Suppression
from tenants.admin import TenantScopedAdmin


@admin.register(Item)
class ItemAdmin(TenantScopedAdmin):
    list_display = ("external_id", "title", "category", "is_available", "is_placeholder",
                    "deleted_at", "tenant")
    list_filter = ("is_available", "is_placeholder", "category")
    search_fields = ("external_id", "title")


@admin.register(EndUser)
class EndUserAdmin(TenantScopedAdmin):
    list_display = ("external_id", "consent", "is_internal", "is_bot", "created_at", "tenant")
    list_filter = ("consent", "is_internal", "is_bot")
    search_fields = ("external_id",)

    # Through the service: the user's row is locked before their events are collected, so an
    # ingestion batch in flight cannot leave events behind.
    def delete_model(self, request, obj):
        delete_end_user(obj.tenant, obj)

    def delete_queryset(self, request, queryset):
        for user in queryset.select_related("tenant"):
            delete_end_user(user.tenant, user)


@admin.register(EventType)
class EventTypeAdmin(TenantScopedAdmin):
    list_display = ("name", "kind", "tenant")
    list_filter = ("kind",)


@admin.register(Event)
class EventAdmin(TenantScopedAdmin):
    list_display = ("timestamp", "user", "event_type", "item", "value", "tenant")
    raw_id_fields = ("user", "item")
    list_select_related = ("user", "item", "event_type")
    show_full_result_count = False  # counting millions of events on every page is wasteful
    # Filters whose choices come from small tables, never from a scan of the events.
    list_filter = ("event_type__kind", "event_type")

    # Events are facts sent by the tenant's applications: viewed and deleted here, never
    # typed in or edited (the REST API and the CSV import validate them).
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Suppression)
class SuppressionAdmin(TenantScopedAdmin):
    list_display = ("user", "item", "reason", "created_at", "tenant")
    list_filter = ("reason",)
    raw_id_fields = ("user", "item")
    list_select_related = ("user", "item")
