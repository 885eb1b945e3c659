"""Items, users and events over REST: validation, idempotency, all-or-nothing, limits."""

import pytest

from mfplatform.catalog.models import EndUser, Event, Item, Suppression
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(tenant_a):
    client = tenant_a.client()
    response = client.post("/api/v1/items", [
        {"external_id": "i1", "title": "One", "category": "books", "tags": ["a", "b"],
         "attributes": {"price": 10}},
        {"external_id": "i2", "title": "Two", "category": "films"},
    ], format="json")
    assert response.status_code == 200, response.json()
    return client


def test_items_bulk_upsert_then_update(tenant_a, catalogue):
    response = catalogue.post("/api/v1/items", [{"external_id": "i1", "title": "One v2",
                                                 "available": False}], format="json")
    assert response.json() == {"created": 0, "updated": 1, "duplicates": 0, "rejected": [],
                               "written": True}
    item = catalogue.get("/api/v1/items/i1").json()
    assert item["title"] == "One v2" and item["available"] is False
    assert [i["external_id"] for i in catalogue.get("/api/v1/items?category=films").json()[
        "results"]] == ["i2"]
    assert [i["external_id"] for i in catalogue.get("/api/v1/items?available=true").json()[
        "results"]] == ["i2"]


def test_item_patch_and_soft_delete(tenant_a, catalogue):
    assert catalogue.patch("/api/v1/items/i2", {"category": "music"},
                           format="json").json()["category"] == "music"
    assert catalogue.delete("/api/v1/items/i2").status_code == 204
    with tenant_a.scope():
        item = Item.objects.get(external_id="i2")
    assert item.deleted_at is not None and not item.is_available
    assert catalogue.get("/api/v1/items/i2").status_code == 404


def test_item_validation_lists_every_bad_row(tenant_a):
    response = tenant_a.client().post("/api/v1/items", [
        {"external_id": "ok"}, {"title": "no id"}, {"external_id": "x", "tags": [1]},
        {"external_id": "y", "colour": "red"}], format="json")
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "external_id"), (2, "tags"), (3, "colour")]
    with tenant_a.scope():
        assert not Item.objects.exists()  # all-or-nothing


def test_user_flags_stored_and_user_delete_removes_events(tenant_a, catalogue):
    response = catalogue.post("/api/v1/users", [
        {"external_id": "u1", "consent": False}, {"external_id": "bot", "is_bot": True},
        {"external_id": "staff", "is_internal": True}], format="json")
    assert response.json()["created"] == 3
    assert catalogue.get("/api/v1/users/u1").json()["consent"] is False
    assert catalogue.get("/api/v1/users/bot").json()["is_bot"] is True
    assert catalogue.get("/api/v1/users/staff").json()["is_internal"] is True
    catalogue.post("/api/v1/events", [{"user": "u1", "item": "i1", "type": "click"}],
                   format="json")
    assert catalogue.delete("/api/v1/users/u1").status_code == 204
    with tenant_a.scope():
        assert not EndUser.objects.filter(external_id="u1").exists()
        assert not Event.objects.exists()


def test_events_created_with_new_users(tenant_a, catalogue):
    response = catalogue.post("/api/v1/events", [
        {"user": "u1", "item": "i1", "type": "click", "timestamp": "2026-01-01T10:00:00Z"},
        {"user": "u2", "item": "i2", "type": "purchase", "value": 2,
         "timestamp": 1_767_261_600},
        {"user": 7, "item": "i2", "type": "rating", "value": "4.5"}], format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 3
    with tenant_a.scope():
        assert set(EndUser.objects.values_list("external_id", flat=True)) == {"u1", "u2", "7"}
        event = Event.objects.get(user__external_id="u2")
        assert event.value == 2.0 and event.timestamp.year == 2026


@pytest.mark.parametrize(("row", "field", "message"), [
    ({"item": "i1", "type": "click"}, "user", "required"),
    ({"user": "u", "type": "click"}, "item", "required"),
    ({"user": "u", "item": "i1", "type": "teleport"}, "type", "unknown event type"),
    ({"user": "u", "item": "nope", "type": "click"}, "item", "unknown item"),
    ({"user": "u", "item": "i1", "type": "click", "timestamp": "yesterday"}, "timestamp",
     "not an ISO 8601"),
    ({"user": "u", "item": "i1", "type": "click", "timestamp": "2999-01-01T00:00:00Z"},
     "timestamp", "in the future"),
    ({"user": "u", "item": "i1", "type": "click", "value": "lots"}, "value", "number"),
    ({"user": "u", "item": "i1", "type": "click", "when": 1}, "when", "unknown field"),
    ("not an object", "", "expected an object"),
])
def test_each_event_validation_error(tenant_a, catalogue, row, field, message):
    response = catalogue.post("/api/v1/events", [
        {"user": "u", "item": "i2", "type": "click"}, row], format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert len(errors) == 1 and errors[0]["index"] == 1 and errors[0]["field"] == field
    assert message in errors[0]["error"]
    with tenant_a.scope():
        assert not Event.objects.exists()  # the good row was not stored either


def test_body_must_be_a_list(tenant_a):
    response = tenant_a.client().post("/api/v1/events", {"user": "u"}, format="json")
    assert response.status_code == 400 and "JSON list" in response.json()["detail"]


def test_partial_stores_good_rows_and_reports_bad(tenant_a, catalogue):
    response = catalogue.post("/api/v1/events?partial=true", [
        {"user": "u", "item": "i1", "type": "click"},
        {"user": "u", "item": "missing", "type": "click"},
        {"user": "u", "item": "i2", "type": "bogus"}], format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["created"] == 1
    assert [(e["index"], e["field"]) for e in body["rejected"]] == [(1, "item"), (2, "type")]


def test_same_batch_twice_is_stored_once(tenant_a, catalogue):
    batch = [{"user": "u", "item": "i1", "type": "click", "event_id": "e1"},
             {"user": "u", "item": "i2", "type": "click", "event_id": "e2"},
             {"user": "u", "item": "i2", "type": "click", "event_id": "e2"}]
    first = catalogue.post("/api/v1/events", batch, format="json").json()
    assert (first["created"], first["duplicates"]) == (2, 1)
    second = catalogue.post("/api/v1/events", batch, format="json").json()
    assert (second["created"], second["duplicates"]) == (0, 3)
    with tenant_a.scope():
        assert Event.objects.count() == 2


def test_batch_over_the_limit_is_413(tenant_a):
    rows = [{"user": "u", "item": "i", "type": "click"}] * 10_001
    response = tenant_a.client().post("/api/v1/events", rows, format="json")
    assert response.status_code == 413
    assert "10000" in response.json()["detail"]


def test_placeholder_items_when_the_tenant_allows(tenant_a, catalogue):
    tenant = Tenant.objects.get(pk=tenant_a.tenant.pk)  # as the admin does: saved, so the
    tenant.settings = {"allow_placeholder_items": True}  # cached API key sees it at once
    tenant.save()
    response = catalogue.post("/api/v1/events", [{"user": "u", "item": "new", "type": "click"}],
                              format="json")
    assert response.json()["created"] == 1
    with tenant_a.scope():
        item = Item.objects.get(external_id="new")
    assert item.is_placeholder and not item.is_available
    # Cataloguing it later makes it a real item.
    catalogue.post("/api/v1/items", [{"external_id": "new", "title": "New"}], format="json")
    with tenant_a.scope():
        item.refresh_from_db()
    assert not item.is_placeholder and item.is_available


def test_negative_events_become_suppressions(tenant_a, catalogue):
    catalogue.post("/api/v1/events", [{"user": "u", "item": "i1", "type": "hide"},
                                      {"user": "u", "item": "i1", "type": "dislike"},
                                      {"user": "u", "item": "i2", "type": "click"}],
                   format="json")
    with tenant_a.scope():
        assert list(Suppression.objects.values_list("item__external_id", "reason")) == [
            ("i1", "hide")]


def test_event_types_default_and_custom(tenant_a):
    client = tenant_a.client()
    names = {t["name"]: t for t in client.get("/api/v1/event-types").json()["results"]}
    assert names["hide"]["kind"] == "negative" and names["purchase"]["kind"] == "positive"
    assert "weight" not in names["purchase"]  # the plan's `events` weighs event types
    response = client.post("/api/v1/event-types", {"name": "share", "kind": "positive"},
                           format="json")
    assert response.status_code == 201
    assert client.post("/api/v1/event-types", {"name": "share"},
                       format="json").status_code == 400


def test_a_full_batch_of_large_items_is_accepted(tenant_a):
    """10,000 items of ~300 bytes each: past Django's 2.5 MB form-upload limit, still fine."""
    rows = [{"external_id": f"item-{i}", "title": "t" * 100, "category": "c",
             "tags": ["a", "b"], "attributes": {"description": "d" * 150, "price": i}}
            for i in range(10_000)]
    response = tenant_a.client().post("/api/v1/items", rows, format="json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["created"] == 10_000


@pytest.mark.parametrize("body", [b"[{", b'[{"user": "u", "item": "i1", "value": NaN}]',
                                  b"\xff\xfe"])
def test_malformed_json_is_400(tenant_a, body):
    response = tenant_a.client().generic("POST", "/api/v1/events", body,
                                         content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


def test_user_validation_all_or_nothing_then_partial(tenant_a):
    client = tenant_a.client()
    rows = [{"external_id": "ok"}, {"external_id": "x", "consent": "yes"}, {"is_bot": True}]
    response = client.post("/api/v1/users", rows, format="json")
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "consent"), (2, "external_id")]
    with tenant_a.scope():
        assert not EndUser.objects.exists()
    response = client.post("/api/v1/users?partial=true", rows, format="json")
    assert response.status_code == 200 and response.json()["created"] == 1
    assert client.get("/api/v1/users").json()["results"][0]["external_id"] == "ok"


def test_all_or_nothing_batch_lists_every_bad_row_and_counts_rows(tenant_a, catalogue):
    response = catalogue.post("/api/v1/events", [
        {"user": "u1", "item": "i1", "type": "click"},
        {"user": "u1", "item": "i1", "type": "nope", "value": "x"},
        {"user": "u2", "item": "unknown", "type": "click"},
    ], format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith("2 of 3 rows are invalid")
    assert {(e["index"], e["field"]) for e in body["errors"]} == {
        (1, "type"), (1, "value"), (2, "item")}
    with tenant_a.scope():
        assert not Event.objects.exists()


@pytest.mark.parametrize("value", ["1" + "0" * 400, 1e300, -1e300, "1e308"])
def test_huge_event_values_are_refused(tenant_a, catalogue, value):
    body = '[{"user": "u1", "item": "i1", "type": "rating", "value": %s}]' % (
        value if isinstance(value, float) or value.isdigit() else f'"{value}"')
    response = catalogue.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == "value"
    with tenant_a.scope():
        assert not Event.objects.exists()


@pytest.mark.parametrize("path, row, field", [
    ("/api/v1/items", {"external_id": "a/b"}, "external_id"),
    ("/api/v1/users", {"external_id": "a/b"}, "external_id"),
    ("/api/v1/events", {"user": "a/b", "item": "i1", "type": "click"}, "user"),
])
def test_ids_with_a_slash_are_refused_at_ingest(tenant_a, catalogue, path, row, field):
    response = catalogue.post(path, [row], format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert '"/"' in response.json()["errors"][0]["error"]


def test_event_ids_may_hold_a_slash(tenant_a, catalogue):
    response = catalogue.post("/api/v1/events", [{"user": "u1", "item": "i1", "type": "click",
                                                  "event_id": "2026/11/30-1"}], format="json")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("body, content_type", [
    ("attributes=null", "application/x-www-form-urlencoded"),
    ("attributes=%5B1%5D", "application/x-www-form-urlencoded"),
    ('attributes={"a":"%5Cu0000"}', "application/x-www-form-urlencoded"),
    ("attributes=" + "%5B" * 3000 + "%5D" * 3000, "application/x-www-form-urlencoded"),
    ('{"attributes": null}', "application/json"),
])
def test_item_patch_with_bad_attributes_is_a_400(tenant_a, catalogue, body, content_type):
    response = catalogue.patch("/api/v1/items/i1", body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert "attributes" in response.json()["errors"]
    with tenant_a.scope():
        assert Item.objects.get(external_id="i1").attributes == {"price": 10}
