"""/api/v1/ routes of the serving app (included by mfplatform/api/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from mfplatform.serving.views import EligibilityRuleViewSet, RecommendationsView, SimilarItemsView

router = SimpleRouter(trailing_slash=False)
router.register("rules", EligibilityRuleViewSet, basename="rule")

urlpatterns = [
    path("recommendations", RecommendationsView.as_view(), name="recommendations"),
    path("items/<str:external_id>/similar", SimilarItemsView.as_view(), name="item-similar"),
    *router.urls,
]
