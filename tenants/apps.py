from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self) -> None:
        from tenants import context, schema  # noqa: F401 - signal receiver, OpenAPI scheme
