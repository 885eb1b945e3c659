from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """django.contrib.admin with the console's site (ops.admin_site) as `admin.site`.

    In a module of its own: it must load before any model, and next to OpsConfig it would
    make Django see two default configurations for the ops app."""

    default = False
    default_site = "mfplatform.ops.admin_site.ConsoleAdminSite"
