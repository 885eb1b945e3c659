"""Model versions for operators and the tenant's members: the report page, and promotion and
rollback with a required reason (owners and admins only; analysts read).

Everything goes through TenantScopedAdmin's queryset: a member sees their tenant's versions
and audit log only, and another tenant's report page is a 404.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from mfplatform.registry.models import ModelStatus, ModelVersion, PromotionLog
from mfplatform.registry.report_page import render_report_html
from mfplatform.registry.services import (
    RegistryError,
    active_version,
    history,
    previous_active,
    promote,
    rollback,
)
from tenants.admin import TenantScopedAdmin


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             min_length=3, max_length=2000,
                             help_text="Recorded in the audit log with your name.")


def _actor(request) -> str:
    return f"user {request.user.get_username()}"


def _report_url(version: ModelVersion) -> str:
    return reverse("admin:registry_modelversion_report", args=[version.pk])


@admin.register(ModelVersion)
class ModelVersionAdmin(TenantScopedAdmin):
    list_display = ("__str__", "tenant", "kind", "strategy", "status", "verdict", "vectors",
                    "created_at", "activated_at", "report_link")
    list_filter = ("status", "kind", ("plan", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("plan", "tenant")
    readonly_fields = [f.name for f in ModelVersion._meta.fields if f.name != "id"] + [
        "report_link", "audit_log"]
    actions = ["promote_versions", "override_rejections", "rollback_versions"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # versions change through promote/rollback only

    def has_delete_permission(self, request, obj=None):
        return False

    def has_manage_permission(self, request) -> bool:
        """Promote and roll back: operators and the tenant's owners and admins."""
        return self._can_configure(request)

    @admin.display(description="gate")
    def verdict(self, obj):
        return (obj.decision or {}).get("verdict", "")

    @admin.display(description="vectors")
    def vectors(self, obj):
        if obj.kind != "mf":
            return "-"
        return "dropped" if obj.vectors_dropped_at else obj.n_item_vectors

    @admin.display(description="report")
    def report_link(self, obj):
        return format_html('<a href="{}">report</a>', _report_url(obj))

    @admin.display(description="audit log")
    def audit_log(self, obj):
        entries = history(obj)
        if not entries:
            return "-"
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li>{} {}: {} &rarr; {} by {}: {}</li>",
            ((e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.action,
              f"v{e.from_version.version}" if e.from_version else "-",
              f"v{e.to_version.version}" if e.to_version else "-", e.actor, e.reason)
             for e in entries)))

    def get_urls(self):
        return [path("<int:pk>/report/", self.admin_site.admin_view(self.report_view),
                     name="registry_modelversion_report"), *super().get_urls()]

    def report_view(self, request, pk: int):
        # Through the tenant-scoped queryset: another tenant's version is simply not found.
        version = self.get_queryset(request).select_related("plan", "plan_revision").filter(
            pk=pk).first()
        if version is None or not self.has_view_permission(request, version):
            raise Http404("no such model version")
        back = reverse("admin:registry_modelversion_change", args=[version.pk])
        return HttpResponse(render_report_html(version, log=history(version), back_url=back))

    def _switch(self, request, queryset, operation, verb: str, describe):
        if not self.has_manage_permission(request):  # the action is not offered; belt and braces
            self.message_user(request, "Only the tenant's owners and admins may " + verb,
                              messages.ERROR)
            return None
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for version in queryset:
                try:
                    operation(version, actor=_actor(request), reason=form.cleaned_data["reason"],
                              actor_user=request.user)
                    self.message_user(request, f"{verb.capitalize()}: {version}.")
                except RegistryError as exc:
                    self.message_user(request, f"{version}: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return TemplateResponse(request, "admin/registry/reason.html", {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} model versions",
            "versions": [(version, describe(version)) for version in queryset],
            "form": form, "action": request.POST.get("action"), "opts": self.model._meta,
            "verb": verb})

    @admin.action(description="Promote the selected versions (asks for a reason)",
                  permissions=["manage"])
    def promote_versions(self, request, queryset):
        def describe(version):
            current = active_version(version.plan)
            if current is None:
                return "becomes the active version"
            return f"becomes active; the active v{current.version} retires"

        return self._switch(request, queryset, promote, "promote", describe)

    @admin.action(description="Promote the selected rejected versions over the gate's "
                              "decision (asks for a reason)", permissions=["manage"])
    def override_rejections(self, request, queryset):
        def describe(version):
            reasons = "; ".join((version.decision or {}).get("reasons", []))
            return f"{version.status}: {reasons}" if reasons else version.status

        def override(version, **kwargs):
            return promote(version, override=True, **kwargs)

        return self._switch(request, queryset, override, "override", describe)

    @admin.action(description="Roll back the selected active versions (asks for a reason)",
                  permissions=["manage"])
    def rollback_versions(self, request, queryset):
        def describe(version):
            if version.status != ModelStatus.ACTIVE:
                return "is not active: nothing to roll back"
            target = previous_active(version)
            return ("no previously active version" if target is None else
                    f"retires; v{target.version} becomes active again")

        return self._switch(request, queryset, rollback, "roll back", describe)


@admin.register(PromotionLog)
class PromotionLogAdmin(TenantScopedAdmin):
    """The audit log, read-only for everyone."""

    list_display = ("created_at", "tenant", "plan", "action", "from_link", "to_link",
                    "actor", "reason")
    list_filter = ("action", ("plan", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("plan", "tenant", "from_version", "to_version")
    search_fields = ("actor", "reason")
    readonly_fields = [f.name for f in PromotionLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @staticmethod
    def _link(version):
        if version is None:
            return "-"
        return format_html('<a href="{}">v{}</a>', _report_url(version), version.version)

    @admin.display(description="from")
    def from_link(self, obj):
        return self._link(obj.from_version)

    @admin.display(description="to")
    def to_link(self, obj):
        return self._link(obj.to_version)
