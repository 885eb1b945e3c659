"""/api/v1/ routes of the training app (included by mfplatform/api/urls.py)."""

urlpatterns: list = []
