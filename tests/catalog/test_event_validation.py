"""Event validation details: every bad field of every row, the column-wise fast path and the
per-value rules agreeing, and the forms values may take."""

from datetime import UTC, datetime

import pytest

from mfplatform.catalog.event_validation import EventColumns, validate_events
from mfplatform.catalog.events import ensure_default_event_types, ingest_events
from mfplatform.catalog.ingest import RowError, upsert_items
from mfplatform.catalog.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def types(tenant_a):
    with tenant_a.scope():
        upsert_items(tenant_a.tenant, [{"external_id": "i1"}, {"external_id": "i2"}])
        return ensure_default_event_types(tenant_a.tenant)


def test_every_bad_field_of_every_row_is_listed(tenant_a, types):
    response = tenant_a.client().post("/api/v1/events", [
        {"user": "u", "item": "i1", "type": "click"},
        {"user": "", "item": None, "type": "click", "value": True},
        {"user": "u", "item": "i1", "type": "click"},
        {"user": "u", "item": "i1", "type": None, "timestamp": "2999-01-01", "event_id": ""},
        {"user": "u", "item": "i1", "type": "click", "a": 1, "b": 2},
    ], format="json")
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "user"), (1, "item"), (1, "value"), (3, "type"), (3, "timestamp"), (4, "a"),
        (4, "b")]
    with tenant_a.scope():
        assert not Event.objects.exists()


@pytest.mark.parametrize("column", [
    ["964982703", "964982703.5", "1970-01-01T00:00:01Z"],  # numbers and ISO mixed
    [964982703, 964982703.5, 1.0],  # JSON numbers
    ["964982703", "964982703.5", " 1 "],  # all numeric text
])
def test_timestamps_in_every_form(types, column):
    errors: list[RowError] = []
    clean = validate_events(EventColumns(index=[0, 1, 2], user=["u"] * 3, item=["i1"] * 3,
                                         timestamp=column), types, "click", errors)
    assert errors == []
    assert clean.micros.tolist() == [964982703_000000, 964982703_500000, 1_000000]


def test_fast_and_per_value_paths_give_the_same_values(types):
    """A bad row sends a column through the per-value rules; the good rows' values must be
    the same as on the vectorised path."""
    good = {"user": [" u1", "u2"], "item": ["i1", "i2"], "value": ["4.5", " 3"],
            "timestamp": ["964982703", "964982704"], "event_id": ["e1 ", None]}
    fast = validate_events(EventColumns(index=[0, 1], **good), types, "rating", [])
    errors: list[RowError] = []
    slow = validate_events(EventColumns(
        index=[0, 1, 2], **{k: [*v, "nan" if k in ("value", "timestamp") else ""]
                            for k, v in good.items()}), types, "rating", errors)
    assert [(e.index, e.field) for e in errors] == [(2, "user"), (2, "item"), (2, "value"),
                                                    (2, "timestamp")]
    for clean in (fast, slow):
        assert clean.user == ["u1", "u2"] and clean.event_id == ["e1", None]
        assert clean.value.tolist() == [4.5, 3.0]
        assert clean.micros.tolist() == [964982703_000000, 964982704_000000]


def test_absent_value_timestamp_and_event_id(tenant_a, types):
    before = datetime.now(UTC)
    with tenant_a.scope():
        result = ingest_events(tenant_a.tenant, [
            {"user": "u", "item": "i1", "type": "click", "value": None, "event_id": None},
            {"user": "u", "item": "i2", "type": "click", "value": 2, "event_id": "x"}])
        assert (result.created, result.rejected) == (2, [])
        first = Event.objects.get(item__external_id="i1")
        assert first.value is None and first.event_id is None and first.timestamp >= before


def test_default_type_only_for_rows_without_one(tenant_a, types):
    with tenant_a.scope():
        result = ingest_events(tenant_a.tenant, [
            {"user": "u", "item": "i1"}, {"user": "u", "item": "i2", "type": "purchase"}],
            default_type="view")
        assert result.created == 2
        assert sorted(Event.objects.values_list("event_type__name", flat=True)) == [
            "purchase", "view"]
        result = ingest_events(tenant_a.tenant, [{"user": "u", "item": "i1"}])
        assert [(e.field, e.error[:18]) for e in result.rejected] == [
            ("type", "unknown event type")]


def test_partial_merges_validation_and_unknown_item_errors_in_row_order(tenant_a, types):
    with tenant_a.scope():
        result = ingest_events(tenant_a.tenant, [
            {"user": "u", "item": "gone", "type": "click"},
            {"user": "u", "item": "i1", "type": "click", "value": "x"},
            {"user": "u", "item": "i2", "type": "hide"}], partial=True)
    assert [(e.index, e.field) for e in result.rejected] == [(0, "item"), (1, "value")]
    assert result.created == 1
