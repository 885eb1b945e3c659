"""Input that used to be a 500: each is a 4xx JSON error naming the field, nothing written."""

import json

import pytest

from mfplatform.catalog.models import EndUser, Event, Item
from mfplatform.serving.models import EligibilityRule
from mfplatform.training.models import TrainingPlan

pytestmark = pytest.mark.django_db

NUL = "\\u0000"  # as JSON text: the decoded string holds a NUL character
SURROGATE = "\\ud800"  # as JSON text: a lone surrogate


def _post_raw(client, path: str, body: str, method: str = "post"):
    return getattr(client, method)(path, body.encode("utf-8"), content_type="application/json")


def _assert_names(response, field: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    assert field in json.dumps(response.json()["errors"]), response.json()


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize("path, row, field", [
    ("/api/v1/items", '[{{"external_id": "ok"}}, {{"external_id": "i{bad}"}}]',
     "[1].external_id"),
    ("/api/v1/items", '[{{"external_id": "i1", "title": "t{bad}"}}]', "[0].title"),
    ("/api/v1/items", '[{{"external_id": "i1", "attributes": {{"k": "v{bad}"}}}}]',
     "[0].attributes.k"),
    ("/api/v1/items", '[{{"external_id": "i1", "attributes": {{"k{bad}": 1}}}}]',
     "[0].attributes"),
    ("/api/v1/items", '[{{"external_id": "i1", "tags": ["a{bad}"]}}]', "[0].tags[0]"),
    ("/api/v1/items", '[{{"external_id": "i1", "category": "c{bad}"}}]', "[0].category"),
    ("/api/v1/users", '[{{"external_id": "u{bad}"}}]', "[0].external_id"),
    ("/api/v1/events", '[{{"user": "u{bad}", "item": "i1", "type": "click"}}]', "[0].user"),
    ("/api/v1/events", '[{{"user": "u", "item": "i1", "event_id": "e{bad}"}}]',
     "[0].event_id"),
    ("/api/v1/rules", '{{"name": "r", "kind": "exclude_category", '
                      '"params": {{"category": "x{bad}"}}}}', "params.category"),
    ("/api/v1/plans", '{{"name": "p{bad}"}}', "name"),
])
def test_unstorable_text_in_a_body_is_a_400_naming_the_field(tenant_a, bad, path, row, field):
    response = _post_raw(tenant_a.client(), path, row.format(bad=bad))
    _assert_names(response, field)
    with tenant_a.scope():
        assert not Item.objects.exists() and not EndUser.objects.exists()
        assert not Event.objects.exists() and not EligibilityRule.objects.exists()
        assert not TrainingPlan.objects.exists()


@pytest.mark.parametrize("url, field", [
    ("/api/v1/items?category=a%00b", "category"),
    ("/api/v1/users?x%00=1", "x\x00"),
    ("/api/v1/models?status=a%00", "status"),
    ("/api/v1/recommendations?user=u&recent_items=a%00", "recent_items"),
    ("/api/v1/recommendations?user=u&exclude=a%00", "exclude"),
    ("/api/v1/recommendations?user=u&category=a%00", "category"),
    ("/api/v1/items/a%00b", "path"),
    ("/api/v1/users/a%00b", "path"),
    ("/api/v1/rules/a%00", "path"),
])
def test_nul_in_a_url_is_a_400_naming_the_parameter(tenant_a, url, field):
    response = tenant_a.client().get(url)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("path", ["/api/v1/items", "/api/v1/events", "/api/v1/users"])
def test_deep_nesting_on_bulk_endpoints_is_a_400(tenant_a, path):
    response = _post_raw(tenant_a.client(), path, _deep(3000))
    assert response.status_code == 400, response.content
    assert "nested" in response.json()["detail"]


@pytest.mark.parametrize("path, method", [("/api/v1/plans", "post"), ("/api/v1/rules", "post"),
                                          ("/api/v1/recommendations", "post")])
def test_deep_nesting_on_parsed_routes_is_a_400(tenant_a, path, method):
    response = _post_raw(tenant_a.client(), path, '{"config": ' + _deep(3000) + "}", method)
    assert response.status_code == 400, response.content
    assert "nested" in response.json()["detail"]


def test_moderate_nesting_in_attributes_is_refused_with_its_path(tenant_a):
    deep = '{"a": ' * 40 + "1" + "}" * 40
    response = _post_raw(tenant_a.client(), "/api/v1/items",
                         '[{"external_id": "i1", "attributes": ' + deep + "}]")
    _assert_names(response, "[0].attributes.a")


@pytest.mark.parametrize("path", ["/api/v1/items", "/api/v1/users", "/api/v1/plans",
                                  "/api/v1/runs", "/api/v1/models", "/api/v1/rules",
                                  "/api/v1/event-types", "/api/v1/datasets"])
def test_huge_limit_on_list_routes_is_bounded(tenant_a, path):
    response = tenant_a.client().get(path + "?limit=99999999999999999999&offset=2")
    assert response.status_code == 200, response.content
    assert response.json()["results"] == [] or path == "/api/v1/event-types"  # defaults


def test_models_filtered_by_a_non_numeric_plan_is_a_400(tenant_a):
    response = tenant_a.client().get("/api/v1/models?plan=abc")
    _assert_names(response, "plan")
    assert tenant_a.client().get("/api/v1/models?plan=99999999999999999999").status_code == 200


def test_a_path_id_matching_no_route_is_a_json_404(tenant_a):
    response = tenant_a.client().get("/api/v1/plans/-2.5")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
