from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self) -> None:
        from tenants import auth, schema  # noqa: F401 - key cache invalidation, OpenAPI scheme
