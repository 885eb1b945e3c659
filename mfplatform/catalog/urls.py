"""/api/v1/ routes of the catalog app (included by mfplatform/api/urls.py)."""

urlpatterns: list = []
