from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from mfplatform.ops.views import healthz, prometheus_metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", prometheus_metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("mfplatform.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[],
                                                   permission_classes=[]), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[],
                                                     permission_classes=[]), name="docs"),
]


def not_found(request, exception=None):
    """API paths get the API's JSON error (a path id that matches no route); pages get HTML."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
