"""Every REST route of the platform, under /api/v1/: each app contributes its own urls.py."""

from django.urls import include, path

from tenants.views import WhoAmIView

app_name = "api"

urlpatterns = [
    # Serving first: its routes are called on every page view, and each include tried before
    # the matching one costs the resolver a failed match.
    path("", include("mfplatform.serving.urls")),
    path("tenant", WhoAmIView.as_view(), name="tenant"),
    path("", include("mfplatform.catalog.urls")),
    path("", include("mfplatform.training.urls")),
    path("", include("mfplatform.registry.urls")),
    path("", include("mfplatform.experiments.urls")),
]
