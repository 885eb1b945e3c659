"""/api/v1/ routes of the serving app (included by mfplatform/api/urls.py)."""

urlpatterns: list = []
