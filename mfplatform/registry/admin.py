"""Model versions for operators and the tenant's members: the report page, and promotion and
rollback with a required reason (owners and admins only; analysts read).

Everything goes through TenantScopedAdmin's queryset: a member sees their tenant's versions
and audit log only, and another tenant's report page is a 404.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from mfplatform.admin_tables import number, table
from mfplatform.registry.models import ModelStatus, ModelVersion, PromotionLog
from mfplatform.registry.report_page import report_context
from mfplatform.registry.services import (
    RegistryError,
    active_version,
    history,
    overridable,
    previous_active,
    promote,
    promotion_blocker,
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
    # The report, checks and decision as tables (the whole report is on the report page).
    readonly_fields = [f.name for f in ModelVersion._meta.fields
                       if f.name not in ("id", "report", "checks", "decision")] + [
        "report_link", "decision_summary", "report_summary", "checks_summary", "audit_log"]
    exclude = ("report", "checks", "decision")
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

    @admin.display(description="promotion decision")
    def decision_summary(self, obj):
        decision = obj.decision or {}
        if not decision:
            return "-"
        thresholds = decision.get("thresholds") or {}
        rows = [("verdict", decision.get("verdict", "")), ("metric", decision.get("metric", ""))]
        rows += [(name if thresholds.get(name) is None else
                  f"{name} (gate: {number(thresholds[name])})", number(value))
                 for name, value in (decision.get("values") or {}).items()]
        rows += [("reason", reason) for reason in decision.get("reasons") or []]
        return table(("", "value"), rows, "decision-summary")

    @admin.display(description="report summary")
    def report_summary(self, obj):
        report = obj.report or {}
        popularity = (report.get("baselines") or {}).get("popularity") or {}
        rows = []
        for segment, per_k in (report.get("metrics") or {}).items():
            for k, values in sorted(per_k.items(), key=lambda item: int(item[0])):
                if values.get("n_users") == 0:  # an empty segment: zeros that mean nothing
                    continue
                rows.append((segment.replace("_", " "), k, number(values.get("ndcg")),
                             number(popularity.get(segment, {}).get(k, {}).get("ndcg")),
                             number(values.get("recall")), number(values.get("hit_rate")),
                             number(values.get("coverage"), 3), values.get("n_users", "-")))
        if not rows:
            return report.get("reason") or "-"
        return table(("segment", "K", "NDCG", "popularity NDCG", "recall", "hit rate",
                      "coverage", "users"), rows, "report-summary")

    @admin.display(description="quality checks")
    def checks_summary(self, obj):
        return table(("check", "result", "reason"),
                     [(c.get("name"), "pass" if c.get("passed") else "fail", c.get("reason", ""))
                      for c in obj.checks or []], "checks-summary")

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
                     name="registry_modelversion_report"),
                path("<int:pk>/promote/", self.admin_site.admin_view(self.promote_view),
                     name="registry_modelversion_promote"),
                path("<int:pk>/rollback/", self.admin_site.admin_view(self.rollback_view),
                     name="registry_modelversion_rollback"),
                *super().get_urls()]

    def _version(self, request, pk: int) -> ModelVersion:
        # Through the tenant-scoped queryset: another tenant's version is simply not found.
        version = self.get_queryset(request).select_related("plan", "plan_revision").filter(
            pk=pk).first()
        if version is None or not self.has_view_permission(request, version):
            raise Http404("no such model version")
        return version

    def report_view(self, request, pk: int):
        """The report inside the admin, with Promote / Roll back for those who may switch."""
        version = self._version(request, pk)
        return TemplateResponse(request, "admin/registry/modelversion/report.html", {
            **self.admin_site.each_context(request),
            **report_context(version, log=history(version)),
            "title": f"{version.plan.name} v{version.version} ({version.status})",
            "opts": self.model._meta, "original": version, "in_admin": True,
            "can_manage": self.has_manage_permission(request),
            "promotion_blocker": promotion_blocker(version),
            "overridable": overridable(version),
            "rollback_target": (previous_active(version)
                                if version.status == ModelStatus.ACTIVE else None)})

    def promote_view(self, request, pk: int):
        version = self._version(request, pk)
        if overridable(version):  # the gate said no: an operator may overrule it, audited
            reasons = "; ".join((version.decision or {}).get("reasons", []))
            return self._switch_one(
                request, version, lambda v, **kwargs: promote(v, override=True, **kwargs),
                "override and promote",
                f"was rejected by the promotion gate ({reasons}); promoting overrules the "
                f"gate, recorded with your reason in the audit log", possible=True)
        blocker = promotion_blocker(version)
        if blocker is not None:
            effect = f"cannot be promoted: {blocker}"
        else:
            current = active_version(version.plan)
            effect = ("becomes the active version" if current is None else
                      f"becomes active; the active v{current.version} retires")
        return self._switch_one(request, version, promote, "promote", effect,
                                possible=blocker is None)

    def rollback_view(self, request, pk: int):
        version = self._version(request, pk)
        target = previous_active(version) if version.status == ModelStatus.ACTIVE else None
        effect = ("is not active: nothing to roll back" if version.status != ModelStatus.ACTIVE
                  else "has no previously active version to return to" if target is None
                  else f"retires; v{target.version} becomes active again")
        return self._switch_one(request, version, rollback, "roll back", effect,
                                possible=target is not None)

    def _switch_one(self, request, version, operation, verb: str, effect: str,
                    possible: bool):
        """One version's promote or rollback page: the effect in words, a required reason,
        then the registry service (audited), and back to the report."""
        if not self.has_manage_permission(request):
            raise PermissionDenied
        report = _report_url(version)
        form = ReasonForm(request.POST if request.method == "POST" and possible else None)
        if form.is_bound and form.is_valid():
            try:
                operation(version, actor=_actor(request), reason=form.cleaned_data["reason"],
                          actor_user=request.user)
                self.message_user(request, f"{verb.capitalize()}: {version}.")
            except RegistryError as exc:
                self.message_user(request, f"{version}: {exc}", messages.ERROR)
            return HttpResponseRedirect(report)
        return TemplateResponse(request, "admin/registry/modelversion/switch.html", {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} {version.plan.name} v{version.version}",
            "version": version, "effect": effect, "possible": possible, "form": form,
            "verb": verb, "opts": self.model._meta, "original": version,
            "report_url": report}, status=400 if form.is_bound else 200)

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
            blocker = promotion_blocker(version)
            if blocker is not None:
                return f"cannot be promoted: {blocker}"
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

    # The versions with the plan revision each was trained with (not the plan's current one).
    list_display = ("created_at", "tenant", "plan_name", "action", "from_link", "to_link",
                    "actor", "reason")
    list_filter = ("action", ("plan", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("plan", "tenant", "from_version__plan_revision",
                           "to_version__plan_revision")
    search_fields = ("actor", "reason")
    readonly_fields = [f.name for f in PromotionLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="plan", ordering="plan__name")
    def plan_name(self, obj):
        return obj.plan.name

    @staticmethod
    def _link(version):
        if version is None:
            return "-"
        return format_html('<a href="{}">v{}</a> (plan rev {})', _report_url(version),
                           version.version, version.plan_revision.revision)

    @admin.display(description="from")
    def from_link(self, obj):
        return self._link(obj.from_version)

    @admin.display(description="to")
    def to_link(self, obj):
        return self._link(obj.to_version)
