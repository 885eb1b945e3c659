
from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from rest_framework.exceptions import ValidationError as DRFValidationError

from mfplatform.admin_tables import EMPTY, number, table
from mfplatform.training.liveness import RunNotCancellable, cancel_run
from mfplatform.training.models import DatasetVersion, PlanRevision, TrainingPlan, TrainingRun
from mfplatform.training.plans import config_reference, validate_plan_config
from mfplatform.training.services import (
    RunInProgress,
    create_plan,
    queue_run,
    update_plan,
)
from tenants.admin import TenantScopedAdmin, is_operator, member_tenant


class TrainingPlanForm(forms.ModelForm):
    """The plan editor: the config as JSON with every field's type and default listed under
    it (from the validating serializers), and errors named by their path on the page."""

    class Meta:
        model = TrainingPlan
        fields = ["tenant", "name", "config", "is_active", "is_serving"]
        widgets = {"config": forms.Textarea(attrs={
            "rows": 24, "cols": 100, "spellcheck": "false",
            "style": "font-family: monospace; white-space: pre;"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.fields["config"]
        config.help_text = format_html(
            "Only what differs from the defaults is needed; a key not listed here is an "
            "error. {}", table(("field", "takes", "default"), config_reference(),
                               "plan-config-reference"))
        if self.instance.pk is None and not self.is_bound:
            self.initial["config"] = validate_plan_config({})

    def clean_config(self):
        try:
            return validate_plan_config(self.cleaned_data["config"] or {})
        except DRFValidationError as exc:
            raise forms.ValidationError(
                [f"{path}: {message}" for path, message in _flatten(exc.detail)]) from exc


def _flatten(detail, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error detail as (dotted path, message) pairs."""
    if isinstance(detail, dict):
        return [pair for key, value in detail.items()
                for pair in _flatten(value, f"{prefix}{key}." if key != "non_field_errors"
                                     else prefix)]
    if isinstance(detail, list):
        return [pair for value in detail for pair in _flatten(value, prefix)]
    return [(prefix.rstrip(".") or "config", str(detail))]


class PlanRevisionInline(admin.TabularInline):
    model = PlanRevision
    fields = ("revision", "created_at", "config")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingPlan)
class TrainingPlanAdmin(TenantScopedAdmin):
    form = TrainingPlanForm
    list_display = ("name", "tenant", "revision", "is_active", "is_serving", "updated_at")
    inlines = [PlanRevisionInline]
    actions = ["train_now"]

    def save_model(self, request, obj, form, change):
        tenant = obj.tenant if is_operator(request) else member_tenant(request)
        data = form.cleaned_data
        if change:
            fields = {"name": data["name"], "is_active": data["is_active"],
                      "is_serving": data["is_serving"]}
            plan = TrainingPlan.objects.get(pk=obj.pk)
            update_plan(plan, config=data["config"], **fields)
        else:
            plan = create_plan(tenant, data["name"], data["config"],
                               is_serving=data["is_serving"] or None)
            obj.pk = plan.pk
        obj.refresh_from_db()

    @admin.action(description="Train the selected plans now")
    def train_now(self, request, queryset):
        for plan in queryset:
            try:
                run = queue_run(plan.tenant, plan, trigger="admin")
                self.message_user(request, f"Queued run {run.pk} of {plan.name}.")
            except RunInProgress as busy:
                self.message_user(request, f"{plan.name}: {busy}", level=messages.WARNING)


@admin.register(DatasetVersion)
class DatasetVersionAdmin(TenantScopedAdmin):
    list_display = ("id", "tenant", "plan_revision", "cutoff", "n_users", "n_items",
                    "n_interactions", "content_hash")
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(TenantScopedAdmin):
    # The plan revision the run used (the plan's own name shows its current revision).
    list_display = ("id", "tenant", "plan_revision", "status", "trigger", "queued_at",
                    "heartbeat_at", "finished_at")
    list_filter = ("status",)
    list_select_related = ("tenant", "plan_revision__plan")
    # Progress and timings as tables, not their JSON.
    readonly_fields = [f.name for f in TrainingRun._meta.fields
                       if f.name not in ("progress", "timings")] + ["progress_table",
                                                                    "timings_table"]
    exclude = ("progress", "timings")
    actions = ["cancel_runs"]

    def has_cancel_permission(self, request) -> bool:
        return self._can_configure(request)

    @admin.action(description="Cancel the selected queued or running runs",
                  permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        for run in queryset:
            try:
                cancel_run(run, "cancelled in the admin", f"user {request.user}")
                self.message_user(request, f"Run {run.pk} cancelled; its plan is free.")
            except RunNotCancellable as exc:
                self.message_user(request, str(exc), level=messages.WARNING)

    @admin.display(description="progress")
    def progress_table(self, obj):
        progress = obj.progress or {}
        rows = [(name.replace("_", " "), number(value)) for name, value in progress.items()]
        if progress.get("iterations"):
            share = progress.get("iteration", 0) / progress["iterations"]
            rows.append(("done", f"{share:.0%}"))
        return table(("", "value"), rows, "run-progress")

    @admin.display(description="timings")
    def timings_table(self, obj):
        timings = obj.timings or {}
        total = sum(v for v in timings.values() if isinstance(v, int | float))
        rows = [(stage.replace("_", " "), f"{seconds:.2f} s",
                 f"{seconds / total:.0%}" if total else EMPTY)
                for stage, seconds in timings.items() if isinstance(seconds, int | float)]
        if rows:
            rows.append(("total", f"{total:.2f} s", "100%"))
        return table(("stage", "seconds", "share"), rows, "run-timings")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
