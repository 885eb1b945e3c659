"""Every REST route of the platform, under /api/v1/. Each app contributes its own router."""

from django.urls import path

from tenants.views import WhoAmIView

app_name = "api"

urlpatterns = [
    path("tenant", WhoAmIView.as_view(), name="tenant"),
]
