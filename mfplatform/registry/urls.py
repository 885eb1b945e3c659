"""/api/v1/ routes of the registry app (included by mfplatform/api/urls.py)."""

urlpatterns: list = []
