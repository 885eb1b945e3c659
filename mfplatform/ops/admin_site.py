"""The admin site with the console: a tenant admin's index is their tenant's overview, and
operators get every tenant's health; both can preview a user's recommendations.

Installed as the default admin site (ops.admin_apps.ConsoleAdminConfig replaces
django.contrib.admin in INSTALLED_APPS), so every app's `admin.register` lands here.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path


class ConsoleAdminSite(admin.AdminSite):
    index_template = "admin/console/index.html"

    # The views are imported when used: the admin modules they import register on this site,
    # which must exist first.
    def index(self, request, extra_context=None):
        from mfplatform.ops import console_views

        return super().index(request, {**console_views.index_context(request),
                                       **(extra_context or {})})

    def get_urls(self):
        from mfplatform.ops import console_views

        return [
            path("console/health/", self.admin_view(console_views.health),
                 name="console_health"),
            path("console/tenants/<slug:slug>/", self.admin_view(console_views.overview),
                 name="console_overview"),
            path("console/preview/", self.admin_view(console_views.preview),
                 name="console_preview"),
            *super().get_urls(),
        ]
