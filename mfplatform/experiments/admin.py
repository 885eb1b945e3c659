"""Experiments in the admin: variants inline (editable while a draft), start and stop actions,
and the results page with charts and "Promote the winner" (the registry's promote, audited).
Everything goes through TenantScopedAdmin's queryset: another tenant's experiment is a 404."""

from __future__ import annotations

import math

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from mfplatform.experiments.models import Experiment, ExperimentStatus, Variant, VariantKind
from mfplatform.experiments.report_page import report_context
from mfplatform.experiments.results import experiment_results
from mfplatform.experiments.services import (
    ExperimentError,
    promote_variant,
    start_experiment,
    stop_experiment,
)
from tenants.admin import TenantScopedAdmin, is_operator, member_tenant
from tenants.models import TenantOwned


class VariantFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        rows = [f.cleaned_data for f in self.forms
                if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if len(rows) < 2:
            raise ValidationError("an experiment needs at least two variants")
        if not math.isclose(sum(r["share"] for r in rows), 1.0, abs_tol=1e-6):
            raise ValidationError("the variants' shares must sum to 1")
        if sum(bool(r.get("is_control")) for r in rows) > 1:
            raise ValidationError("at most one control variant")
        tenant = self.instance.tenant if self.instance.tenant_id else None
        for r in rows:
            if r["kind"] == VariantKind.VERSION and r.get("model_version") is None:
                raise ValidationError(f"variant {r['name']}: choose a model version")
            if r["kind"] == VariantKind.PLAN and r.get("plan") is None:
                raise ValidationError(f"variant {r['name']}: choose a plan")
            for related in (r.get("model_version"), r.get("plan")):
                if tenant is not None and related is not None and \
                        related.tenant_id != tenant.pk:
                    raise ValidationError(f"variant {r['name']}: not of this tenant")


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantFormSet
    fields = ("name", "kind", "model_version", "plan", "share", "is_control")
    extra = 2
    min_num = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if not is_operator(request) and issubclass(related, TenantOwned):
            tenant = member_tenant(request)
            kwargs["queryset"] = (related.objects.filter(tenant=tenant)
                                  if tenant is not None else related.objects.none())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _editable(self, obj) -> bool:
        return obj is None or obj.status == ExperimentStatus.DRAFT

    # Members get their rights from their membership, as in TenantScopedAdmin (not from
    # Django's per-model permissions); variants change only while the experiment is a draft.
    def _can_configure(self, request) -> bool:
        membership = getattr(request, "membership", None)
        return is_operator(request) or (membership is not None and membership.can_configure)

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and self._can_configure(request)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and self._can_configure(request)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and self._can_configure(request)

    def has_view_permission(self, request, obj=None):
        return is_operator(request) or getattr(request, "membership", None) is not None


def _results_url(experiment: Experiment) -> str:
    return reverse("admin:experiments_experiment_results", args=[experiment.pk])


@admin.register(Experiment)
class ExperimentAdmin(TenantScopedAdmin):
    list_display = ("name", "surface", "status", "started_at", "stopped_at", "results_link",
                    "tenant")
    list_filter = ("status", "surface")
    fields = ("tenant", "name", "surface", "click_event", "min_samples", "alpha", "status",
              "started_at", "stopped_at")
    readonly_fields = ("status", "started_at", "stopped_at")
    inlines = [VariantInline]
    actions = ["start_experiments", "stop_experiments"]

    def save_formset(self, request, form, formset, change):
        variants = formset.save(commit=False)
        for variant in variants:
            variant.tenant = form.instance.tenant
            variant.save()
        for variant in formset.deleted_objects:
            variant.delete()

    @admin.display(description="results")
    def results_link(self, obj):
        return format_html('<a href="{}">results</a>', _results_url(obj))

    def get_urls(self):
        return [path("<int:pk>/results/", self.admin_site.admin_view(self.results_view),
                     name="experiments_experiment_results"),
                path("<int:pk>/promote/", self.admin_site.admin_view(self.promote_view),
                     name="experiments_experiment_promote"),
                *super().get_urls()]

    def _experiment(self, request, pk: int) -> Experiment:
        experiment = self.get_queryset(request).filter(pk=pk).first()
        if experiment is None or not self.has_view_permission(request, experiment):
            raise Http404("no such experiment")
        return experiment

    def results_view(self, request, pk: int):
        experiment = self._experiment(request, pk)
        results = experiment_results(experiment.tenant, experiment)
        winner = results["winner"]
        control = next((v["variant"] for v in results["variants"] if v["control"]), None)
        return TemplateResponse(request, "admin/experiments/experiment/results.html", {
            **self.admin_site.each_context(request), **report_context(results),
            "title": f"Experiment {experiment.name} ({experiment.status})",
            "opts": self.model._meta, "experiment": experiment, "original": experiment,
            # The popularity control has no model: a winning control keeps what is active.
            "can_promote": (winner is not None and self._can_configure(request)
                            and not (winner == control and experiment.variants.filter(
                                name=winner, kind=VariantKind.POPULARITY).exists()))})

    def promote_view(self, request, pk: int):
        experiment = self._experiment(request, pk)
        if request.method != "POST":
            return HttpResponseRedirect(_results_url(experiment))
        if not self._can_configure(request):
            raise PermissionDenied
        reason = request.POST.get("reason", "")
        try:
            entry = promote_variant(experiment.tenant, experiment,
                                    request.POST.get("variant", ""),
                                    actor=f"user {request.user.get_username()}",
                                    reason=reason, actor_user=request.user)
            self.message_user(request, f"Promoted v{entry.to_version.version}.")
        except ExperimentError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(_results_url(experiment))

    def _run(self, request, queryset, operation, verb: str):
        for experiment in queryset:
            try:
                operation(experiment.tenant, experiment)
                self.message_user(request, f"{verb}: {experiment.name}")
            except ExperimentError as exc:
                self.message_user(request, f"{experiment.name}: {exc}", messages.ERROR)

    @admin.action(description="Start the selected experiments")
    def start_experiments(self, request, queryset):
        self._run(request, queryset, start_experiment, "Started")

    @admin.action(description="Stop the selected experiments")
    def stop_experiments(self, request, queryset):
        self._run(request, queryset, stop_experiment, "Stopped")
