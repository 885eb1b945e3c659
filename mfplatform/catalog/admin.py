from django import forms
from django.contrib import admin
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from mfplatform.catalog.import_jobs import ImportJobError, check_mapping, create_import_job
from mfplatform.catalog.ingest import delete_end_user
from mfplatform.catalog.models import (
    EndUser,
    Event,
    EventType,
    ImportJob,
    ImportStatus,
    Item,
    Suppression,
)
from tenants.admin import TenantScopedAdmin, is_operator, member_tenant


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


class ImportJobForm(forms.ModelForm):
    """The upload: a CSV file, which column holds which field, and the import's options."""

    upload = forms.FileField(label="CSV file")
    columns = forms.CharField(
        label="Columns", widget=forms.TextInput(attrs={"size": 80}),
        help_text="field=column, comma-separated. Items: item, title, category, tags "
        "(e.g. item=movieId,title=title,category=genres,tags=genres). Events: user, item, "
        "type, value, timestamp, event_id (e.g. user=userId,item=movieId,value=rating,"
        "timestamp=timestamp).")
    default_type = forms.CharField(required=False, help_text="events: the type of rows "
                                   "without a type column (e.g. rating)")
    tags_sep = forms.CharField(required=False, initial="|", strip=False,
                               help_text="items: separator inside the tags column")
    partial = forms.BooleanField(required=False, help_text="store the good rows and report "
                                 "the bad ones (default: one bad row stores nothing)")
    create_items = forms.BooleanField(required=False, help_text="events: unknown items "
                                      "become placeholders instead of errors")

    class Meta:
        model = ImportJob
        fields = ["tenant", "kind"]

    def clean(self):
        data = super().clean()
        if "kind" in data and "columns" in data:
            try:
                data["mapping"] = check_mapping(data["kind"], data["columns"],
                                                data.get("default_type", ""))
            except (ImportJobError, ValueError) as exc:
                self.add_error("columns", str(exc))
        return data


@admin.register(ImportJob)
class ImportJobAdmin(TenantScopedAdmin):
    """CSV imports from the admin, run by a worker; the row-error report is downloadable."""

    list_display = ("queued_at", "tenant", "kind", "file_name", "status", "progress",
                    "created", "updated", "errors_link")
    list_filter = ("status", "kind")
    readonly_fields = ("kind", "file_name", "mapping", "options", "status", "progress", "rows",
                       "created", "updated", "duplicates", "rejected", "error", "errors_link",
                       "requested_by", "queued_at", "started_at", "heartbeat_at",
                       "finished_at")
    # The job page reloads itself while the job runs (its counts move every chunk).
    change_form_template = "admin/catalog/importjob/change_form.html"

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ImportJobForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            fields = ["kind", "upload", "columns", "default_type", "tags_sep", "partial",
                      "create_items"]
            return (["tenant"] if is_operator(request) else []) + fields
        return list(self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def save_model(self, request, obj, form, change):
        tenant = obj.tenant if is_operator(request) else member_tenant(request)
        data = form.cleaned_data
        options = {"partial": data["partial"], "default_type": data["default_type"],
                   "tags_sep": data["tags_sep"], "create_items": data["create_items"]}
        job = create_import_job(tenant, data["kind"], data["upload"], data["mapping"],
                                options, requested_by=str(request.user))
        obj.pk = job.pk
        obj.refresh_from_db()

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj):
        """Rows read, accepted and rejected: written after every chunk while the job runs."""
        text = (f"{obj.rows:,} rows read · {obj.accepted:,} accepted · "
                f"{obj.rejected:,} rejected")
        if obj.status == ImportStatus.RUNNING and obj.heartbeat_at is not None:
            seconds = max((timezone.now() - obj.heartbeat_at).total_seconds(), 0)
            text += f" (running; last report {seconds:,.0f} s ago)"
        return text

    @admin.display(description="row errors")
    def errors_link(self, obj):
        if not obj.errors_file:
            return "-"
        url = reverse("admin:catalog_importjob_errors", args=[obj.pk])
        return format_html('<a href="{}">{} rows (CSV)</a>', url, obj.rejected)

    def get_urls(self):
        return [path("<int:pk>/errors.csv", self.admin_site.admin_view(self.errors_view),
                     name="catalog_importjob_errors")] + super().get_urls()

    def errors_view(self, request, pk: int):
        job = self.get_queryset(request).filter(pk=pk).first()  # another tenant's: a 404
        if job is None or not job.errors_file:
            raise Http404("no such import job report")
        return FileResponse(default_storage.open(job.errors_file, "rb"), as_attachment=True,
                            filename=f"import-{job.pk}-errors.csv", content_type="text/csv")
