"""OpenAPI (drf-spectacular): the API key security scheme."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "mf_<prefix>_<secret>",
                "description": "A tenant API key with the scopes the route needs "
                               "(ingest, recommend, manage)."}

