"""Model versions for operators and the tenant's members: the report page, and promotion and
rollback with a required reason (owners and admins only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from mfplatform.registry.models import ModelVersion, PromotionLog
from mfplatform.registry.report_page import render_report_html
from mfplatform.registry.services import RegistryError, promote, rollback
from tenants.admin import TenantScopedAdmin


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             min_length=3, max_length=2000)


def _actor(request) -> str:
    return f"user {request.user.get_username()}"


@admin.register(ModelVersion)
class ModelVersionAdmin(TenantScopedAdmin):
    list_display = ("__str__", "tenant", "kind", "strategy", "status", "created_at",
                    "activated_at", "report_link")
    list_filter = ("status", "kind", "plan")
    readonly_fields = [f.name for f in ModelVersion._meta.fields if f.name != "id"] + [
        "report_link"]
    actions = ["promote_versions", "rollback_versions"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # versions change through promote/rollback only

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="report")
    def report_link(self, obj):
        url = reverse("admin:registry_modelversion_report", args=[obj.pk])
        return format_html('<a href="{}">report</a>', url)

    def get_urls(self):
        return [path("<int:pk>/report/", self.admin_site.admin_view(self.report_view),
                     name="registry_modelversion_report"), *super().get_urls()]

    def report_view(self, request, pk: int):
        # Through the tenant-scoped queryset: another tenant's version is simply not found.
        version = self.get_queryset(request).filter(pk=pk).first()
        if version is None or not self.has_view_permission(request, version):
            raise Http404("no such model version")
        return HttpResponse(render_report_html(version))

    def _switch(self, request, queryset, operation, verb: str):
        if not self._can_configure(request):
            self.message_user(request, "Only the tenant's owners and admins may " + verb,
                              messages.ERROR)
            return None
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for version in queryset:
                try:
                    operation(version, actor=_actor(request), reason=form.cleaned_data["reason"],
                              actor_user=request.user)
                    self.message_user(request, f"{verb.title()}: {version}.")
                except RegistryError as exc:
                    self.message_user(request, f"{version}: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return TemplateResponse(request, "admin/registry/reason.html", {
            **self.admin_site.each_context(request), "title": f"{verb.title()} model versions",
            "versions": queryset, "form": form, "action": request.POST.get("action"),
            "opts": self.model._meta, "verb": verb})

    @admin.action(description="Promote the selected versions (asks for a reason)")
    def promote_versions(self, request, queryset):
        return self._switch(request, queryset, promote, "promote")

    @admin.action(description="Roll back the selected active versions (asks for a reason)")
    def rollback_versions(self, request, queryset):
        return self._switch(request, queryset, rollback, "roll back")


@admin.register(PromotionLog)
class PromotionLogAdmin(TenantScopedAdmin):
    list_display = ("created_at", "tenant", "plan", "action", "from_version", "to_version",
                    "actor", "reason")
    list_filter = ("action",)
    readonly_fields = [f.name for f in PromotionLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
