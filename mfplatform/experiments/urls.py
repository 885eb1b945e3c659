"""/api/v1/ routes of the experiments app (included by mfplatform/api/urls.py)."""

from rest_framework.routers import SimpleRouter

from mfplatform.experiments.views import ExperimentViewSet

router = SimpleRouter(trailing_slash=False)
router.register("experiments", ExperimentViewSet, basename="experiment")

urlpatterns = router.urls
