import pytest
import yaml

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


def test_interactive_docs_page(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command

    # --fail-on-warn: a view whose request or response cannot be described breaks the build.
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").stat().st_size > 10_000
