"""/api/v1/ routes of the training app (included by mfplatform/api/urls.py)."""

from rest_framework.routers import SimpleRouter

from mfplatform.training.views import (
    DatasetVersionViewSet,
    TrainingPlanViewSet,
    TrainingRunViewSet,
)

router = SimpleRouter(trailing_slash=False)
router.register("plans", TrainingPlanViewSet, basename="plan")
router.register("runs", TrainingRunViewSet, basename="run")
router.register("datasets", DatasetVersionViewSet, basename="dataset")

urlpatterns = router.urls
