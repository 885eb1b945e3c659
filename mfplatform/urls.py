from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from mfplatform.api.views import unknown_route
from mfplatform.ops.views import healthz, prometheus_metrics

# The admin's "View site" opens the API docs; the bare host opens the admin.
admin.site.site_url = "/api/docs/"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/")),
    path("healthz", healthz, name="healthz"),
    path("metrics", prometheus_metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("mfplatform.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[],
                                                   permission_classes=[]), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[],
                                                     permission_classes=[]), name="docs"),
    # Last: any other /api/ path is a JSON 404 (a trailing slash included), never HTML.
    re_path(r"^api/(?P<path>.*)$", unknown_route),
]

