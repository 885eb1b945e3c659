"""The console's admin pages. Thin: the numbers come from ops.console, the tenant from the
logged-in user (a member sees their own tenant only; another tenant's page is a 404, as
everywhere else), and operators (superusers) may pick any tenant."""

from __future__ import annotations

from django import forms
from django.http import Http404, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from mfplatform.ops import console
from mfplatform.serving.service import MAX_K, ServingError
from tenants.admin import is_operator, member_tenant
from tenants.context import rls_bypass
from tenants.models import Tenant

HEALTH_HEADERS = (("health", "health"), ("tenant", "tenant"), ("model", "active model"),
                  ("model_age", "model age"), ("last_run", "last run"),
                  ("last_run_at", "last run queued"), ("failed_7d", "failed runs, 7 d"),
                  ("events_24h", "events, 24 h"))


def _page(request, template: str, title: str, **context) -> TemplateResponse:
    from django.contrib import admin

    return TemplateResponse(request, template, {**admin.site.each_context(request),
                                                "title": title, **context})


def _tenant_for(request, slug: str | None) -> Tenant:
    """The tenant a page is about: the member's own (another slug is a 404), or for an
    operator the one named."""
    if is_operator(request):
        if not slug:
            raise Http404("no tenant named")
        with rls_bypass():
            tenant = Tenant.objects.filter(slug=slug).first()
    else:
        tenant = member_tenant(request)
        if tenant is not None and slug and slug != tenant.slug:
            tenant = None
    if tenant is None:
        raise Http404("no such tenant")
    return tenant


def index_context(request) -> dict:
    if is_operator(request):
        return {"is_operator": True}
    tenant = member_tenant(request)
    return {} if tenant is None else {"overview": console.tenant_overview(tenant)}


def overview(request, slug: str):
    tenant = _tenant_for(request, slug)
    return _page(request, "admin/console/overview.html", f"{tenant.name}: overview",
                 overview=console.tenant_overview(tenant))


def health(request):
    if not is_operator(request):
        raise Http404("operators only")
    column = request.GET.get("sort", "health")
    descending = request.GET.get("dir") == "desc"
    try:
        rows = console.sort_health(console.tenant_health(), column, descending)
    except ValueError as exc:
        return JsonResponse({"sort": [str(exc)]}, status=400)
    headers = [{"label": label, "active": name == column, "descending": descending,
                # A second click on the sorted column turns the order around.
                "url": f"?sort={name}&dir={'asc' if descending else 'desc'}"
                if name == column else f"?sort={name}"}
               for name, label in HEALTH_HEADERS]
    return _page(request, "admin/console/health.html", "Tenant health", rows=rows,
                 headers=headers)


class PreviewForm(forms.Form):
    tenant = forms.SlugField(required=False, help_text="Operators: the tenant's slug.")
    user = forms.CharField(max_length=200, help_text="The user's id as your systems send it.")
    k = forms.IntegerField(min_value=1, max_value=min(MAX_K, 100), initial=10)
    category = forms.CharField(max_length=200, required=False,
                               help_text="Only items of this category (optional).")


def preview(request):
    operator = is_operator(request)
    bound = "user" in request.GET
    form = PreviewForm(request.GET if bound else None,
                       initial={"k": 10, "tenant": request.GET.get("tenant", "")})
    if not operator:
        form.fields["tenant"].widget = forms.HiddenInput()
    tenants = []
    if operator:
        with rls_bypass():
            tenants = list(Tenant.objects.order_by("slug").values_list("slug", flat=True))
        form.fields["tenant"].widget = forms.Select(choices=[(s, s) for s in tenants])
        form.fields["tenant"].required = True
    # Another tenant's slug is a 404 whether or not the rest of the form is valid.
    tenant = (_tenant_for(request, request.GET.get("tenant") or None)
              if (not operator or request.GET.get("tenant")) else None)
    answer = None
    status = 200
    if bound and form.is_valid():
        try:
            answer = console.preview(tenant, form.cleaned_data["user"], form.cleaned_data["k"],
                                     form.cleaned_data["category"])
        except ServingError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
    if bound and form.errors:
        status = 400
    response = _page(request, "admin/console/preview.html",
                     "Preview recommendations" + (f" for {tenant.slug}" if tenant else ""),
                     form=form, answer=answer, tenant=tenant,
                     overview_url=reverse("admin:console_overview", args=[tenant.slug])
                     if tenant else None)
    response.status_code = status
    return response
