from django import forms
from django.contrib import admin

from mfplatform.serving.models import EditorialPick, EligibilityRule
from mfplatform.serving.rules import RuleParamsError, make_rule, rule_kinds
from tenants.admin import TenantScopedAdmin


class EligibilityRuleForm(forms.ModelForm):
    class Meta:
        model = EligibilityRule
        fields = ["tenant", "name", "kind", "params", "enabled", "order"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"] = forms.ChoiceField(
            choices=[(k, f"{k}: {cls.description}") for k, cls in sorted(rule_kinds().items())])

    def clean(self):
        data = super().clean()
        try:
            data["params"] = make_rule(data.get("kind"), data.get("params") or {}).params
        except RuleParamsError as exc:
            raise forms.ValidationError(f"params: {exc}") from exc
        return data


@admin.register(EligibilityRule)
class EligibilityRuleAdmin(TenantScopedAdmin):
    form = EligibilityRuleForm
    list_display = ("name", "kind", "params", "enabled", "order", "tenant")
    list_editable = ("enabled", "order")


@admin.register(EditorialPick)
class EditorialPickAdmin(TenantScopedAdmin):
    list_display = ("position", "item", "category", "tenant")
    raw_id_fields = ("item",)
