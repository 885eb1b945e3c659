import re

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db


def test_schema_documents_every_api_route_with_errors(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    paths = schema["paths"]
    assert "/api/v1/plans/{id}/train" in paths
    for path, operations in paths.items():
        assert path.startswith("/api/v1/")
        for method, operation in operations.items():
            assert "200" in operation["responses"] or "201" in operation["responses"] or \
                "202" in operation["responses"] or "204" in operation["responses"], (path, method)
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


def test_interactive_docs_page_needs_nothing_from_outside(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger" in page.lower()
    # Every script and stylesheet comes from this server (offline and locked-down networks).
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(not a.startswith(("http:", "https:", "//")) for a in assets), assets
    bundle = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
    served = client.get(bundle)
    assert served.status_code == 200
    assert b"SwaggerUIBundle" in b"".join(served.streaming_content)


@pytest.mark.parametrize("path", ["/api/v1/recommendations/", "/api/v1/nothing-here",
                                  "/api/v2/items"])
def test_unknown_api_paths_are_json_404s(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "not_found"
    if path.endswith("/"):
        assert "no trailing slash" in body["detail"]


def test_root_leads_to_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command

    # --fail-on-warn: a view whose request or response cannot be described breaks the build.
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").stat().st_size > 10_000


def test_a_post_to_no_route_is_a_json_404_not_a_csrf_403():
    # API clients send no CSRF token; a path id of the wrong shape matches no route.
    response = Client(enforce_csrf_checks=True).post("/api/v1/plans/0.5/train", {})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_every_operation_has_its_own_description(tmp_path):
    """Each operation says what it does: none is empty, and none inherits the docstring of a
    base class written for developers (the tenant-scoped mixin, the metrics mixin)."""
    from django.core.management import call_command

    from mfplatform.serving.views import Timed
    from tenants.api import TenantScopedMixin

    internal = {" ".join(cls.__doc__.split()) for cls in (TenantScopedMixin, Timed)}
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    undescribed = [(method, route) for route, operations in schema["paths"].items()
                   for method, operation in operations.items()
                   if " ".join((operation.get("description") or "").split()) in internal | {""}]
    assert undescribed == []
