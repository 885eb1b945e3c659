"""/api/v1/ routes of the registry app (included by mfplatform/api/urls.py)."""

from rest_framework.routers import SimpleRouter

from mfplatform.registry.views import ModelVersionViewSet

router = SimpleRouter(trailing_slash=False)
router.register("models", ModelVersionViewSet, basename="model")

urlpatterns = router.urls
