"""/api/v1/ routes of the catalog app (included by mfplatform/api/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from mfplatform.catalog.views import EndUserViewSet, EventsView, EventTypeViewSet, ItemViewSet

router = SimpleRouter(trailing_slash=False)
router.register("items", ItemViewSet, basename="item")
router.register("users", EndUserViewSet, basename="user")
router.register("event-types", EventTypeViewSet, basename="eventtype")

urlpatterns = [path("events", EventsView.as_view(), name="event-list"), *router.urls]
