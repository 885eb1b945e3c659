"""Every REST route of the platform, under /api/v1/: each app contributes its own urls.py."""

from django.urls import include, path

from tenants.views import WhoAmIView

app_name = "api"

urlpatterns = [
    path("tenant", WhoAmIView.as_view(), name="tenant"),
    path("", include("mfplatform.catalog.urls")),
    path("", include("mfplatform.training.urls")),
    path("", include("mfplatform.registry.urls")),
    path("", include("mfplatform.serving.urls")),
]
