"""The dataset build streams events out of Postgres in chunks (binary COPY into numpy): the
arrays, counts and content hash are those of a plain ORM reading, whatever the chunk size, and
row-level security still decides which rows leave the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from mfengine.data import prepare_interactions
from mfplatform.catalog.models import EndUser, Event, EventType, Item
from mfplatform.training.copy_reader import (
    CopyFormatError,
    RowLayout,
    copy_columns,
    parse_chunks,
)
from mfplatform.training.dataset import (
    build_dataset_version,
    cutoff_seconds,
    load_events,
    prepare_config,
)
from mfplatform.training.event_stream import EVENTS, EVENTS_SQL, in_order
from mfplatform.training.models import PlanRevision
from tenants.context import apply_scope
from tests.factories import make_plan

pytestmark = pytest.mark.django_db

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TYPES = {"click": "positive", "purchase": "positive", "view": "positive", "hide": "negative",
          "report": "policy"}


def _plant(tenant, cutoff: datetime, n_events: int = 400, seed: int = 0) -> None:
    """Users and items of every filter's kind; events of every type, some without a value,
    some outside the window or after the cutoff, many sharing one timestamp (the id orders
    them), with microseconds."""
    rng = np.random.default_rng(seed)
    types = [EventType.objects.create(tenant=tenant, name=name, kind=kind)
             for name, kind in _TYPES.items()]
    users = [EndUser.objects.create(tenant=tenant, external_id=f"u{u}", is_bot=u == 1,
                                    is_internal=u == 2, consent=u != 3) for u in range(14)]
    items = [Item.objects.create(tenant=tenant, external_id=f"i{i}", is_placeholder=i == 1,
                                 banned_at=cutoff if i == 2 else None,
                                 deleted_at=cutoff if i == 3 else None) for i in range(11)]
    shared = cutoff - timedelta(days=3, microseconds=250)
    stamps = [shared if k % 9 == 0 else cutoff - timedelta(
        seconds=float(rng.uniform(-2 * 86400, 40 * 86400))) for k in range(n_events)]
    Event.objects.bulk_create(
        Event(tenant=tenant, user=users[int(rng.integers(len(users)))],
              item=items[int(rng.integers(len(items)))],
              event_type=types[int(rng.integers(len(types)))],
              value=None if k % 4 == 0 else float(rng.integers(1, 6)), timestamp=stamp)
        for k, stamp in enumerate(stamps))


def _reference(tenant, config: dict, cutoff: datetime) -> dict:
    """What the dataset build reads, by a plain ORM query and Python: the expectation."""
    start = cutoff - timedelta(days=config["window"]["days"])
    wanted = list(config["events"]) + list(config["negative_events"])
    rows = (Event.objects.filter(tenant=tenant, timestamp__gte=start, timestamp__lt=cutoff,
                                 event_type__name__in=wanted)
            .exclude(event_type__kind="policy").select_related("user", "item", "event_type")
            .order_by("timestamp", "id"))
    reasons = {"exclude_bot": lambda e: e.user.is_bot,
               "exclude_internal": lambda e: e.user.is_internal,
               "consent_required": lambda e: not e.user.consent,
               "valid_item": lambda e: bool(e.item.deleted_at or e.item.banned_at
                                            or e.item.is_placeholder)}
    counts = {"events_read": 0, **{f"filtered_{name}": 0 for name in config["filters"]}}
    kept = []
    for event in rows:
        counts["events_read"] += 1
        hit = next((name for name in config["filters"] if reasons[name](event)), None)
        if hit is None:
            kept.append(event)
        else:
            counts[f"filtered_{hit}"] += 1
    counts["events_kept"] = len(kept)
    return {
        "user_ids": np.array([e.user_id for e in kept], dtype=np.int64),
        "item_ids": np.array([e.item_id for e in kept], dtype=np.int64),
        "type_names": np.array([e.event_type.name for e in kept], dtype=str),
        "values": np.array([np.nan if e.value is None else e.value for e in kept]),
        "timestamps": np.array([(e.timestamp - _EPOCH) // timedelta(seconds=1) for e in kept],
                               dtype=np.int64),
        "counts": counts,
        "negative_types": frozenset(EventType.objects.filter(
            tenant=tenant, kind="negative").values_list("name", flat=True)),
    }


def _plan_revision(tenant) -> PlanRevision:
    plan = make_plan(tenant, "stream", events={"click": 1, "purchase": 5},
                     negative_events=["hide"],
                     window={"days": 30, "recency_half_life_days": 10})
    return PlanRevision.objects.get(plan=plan, revision=plan.revision)


def _assert_same_events(events, expected: dict) -> None:
    for name in ("user_ids", "item_ids", "timestamps"):
        got = getattr(events, name)
        assert got.dtype == np.int64, name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)
    np.testing.assert_array_equal(events.values, expected["values"])  # NaN where no value
    np.testing.assert_array_equal(events.type_names, expected["type_names"])
    assert events.type_codes.dtype.itemsize <= 2
    assert events.counts == expected["counts"]
    assert events.negative_types == expected["negative_types"]


@pytest.mark.parametrize("chunk_rows", [1, 7, 1_000_000])
def test_streamed_events_are_the_orm_reading_whatever_the_chunk(tenant_a, tenant_b, chunk_rows):
    cutoff = timezone.now().replace(microsecond=500_000)
    with tenant_b.scope():
        _plant(tenant_b.tenant, cutoff, seed=1)
        b_user = EndUser.objects.first()
    with tenant_a.scope():
        _plant(tenant_a.tenant, cutoff)
        # Events whose user or item this tenant cannot see (no foreign keys in the database):
        # the join left them out uncounted, and so does the stream.
        click = EventType.objects.get(name="click")
        some = dict(tenant=tenant_a.tenant, event_type=click, timestamp=cutoff - timedelta(1))
        Event.objects.bulk_create([Event(user_id=b_user.pk, item=Item.objects.first(), **some),
                                   Event(user=EndUser.objects.first(), item_id=10**12, **some)])
        config = _plan_revision(tenant_a.tenant).config
        expected = _reference(tenant_a.tenant, config, cutoff)
        events = load_events(tenant_a.tenant, config, cutoff, chunk_rows=chunk_rows)
    assert expected["counts"]["events_read"] > 10 * 7  # several chunks of 7 rows
    assert all(expected["counts"][f"filtered_{name}"] for name in config["filters"])
    _assert_same_events(events, expected)


def test_a_build_of_many_chunks_has_the_one_shot_hash_and_matrix(tenant_a):
    cutoff = timezone.now()
    with tenant_a.scope():
        _plant(tenant_a.tenant, cutoff, n_events=600)
        revision = _plan_revision(tenant_a.tenant)
        config = revision.config
        expected = _reference(tenant_a.tenant, config, cutoff)
        with override_settings(DATASET_READ_CHUNK_ROWS=5):
            dataset, events, prepared = build_dataset_version(tenant_a.tenant, revision, cutoff)
    # The one-shot path: every event's type name handed to mfengine with the plan's weights.
    reference = prepare_interactions(
        expected["user_ids"], expected["item_ids"], expected["timestamps"],
        cutoff=cutoff_seconds(cutoff), event_types=expected["type_names"],
        values=np.nan_to_num(expected["values"], nan=1.0),
        config=prepare_config(config, expected["negative_types"]))
    assert expected["counts"]["events_read"] > 20 * 5
    _assert_same_events(events, expected)
    assert prepared.counts["negative_events"] > 0 and prepared.matrix.nnz > 20
    assert dataset.content_hash == prepared.content_hash == reference.content_hash
    assert (prepared.matrix != reference.matrix).nnz == 0
    np.testing.assert_array_equal(prepared.matrix.data, reference.matrix.data)
    for name in ("user_ids", "item_ids", "suppression_user_ids", "suppression_item_ids"):
        np.testing.assert_array_equal(getattr(prepared, name), getattr(reference, name))
    assert dataset.counts["events_read"] == expected["counts"]["events_read"]


@pytest.mark.parametrize("use_values", [False, True])
def test_the_artifact_holds_the_prepared_arrays(tenant_a, use_values):
    """Written through a temporary file: every array as prepared (dtypes too), whatever the
    plan does with values (only read when it uses them)."""
    cutoff = timezone.now()
    with tenant_a.scope():
        _plant(tenant_a.tenant, cutoff, n_events=300)
        plan = make_plan(tenant_a.tenant, "artifact", events={"click": 1, "purchase": 5},
                         negative_events=["hide"], transform={"use_values": use_values})
        revision = PlanRevision.objects.get(plan=plan, revision=plan.revision)
        dataset, events, prepared = build_dataset_version(tenant_a.tenant, revision, cutoff)
        expected = _reference(tenant_a.tenant, revision.config, cutoff)
    reference = prepare_interactions(
        expected["user_ids"], expected["item_ids"], expected["timestamps"],
        cutoff=cutoff_seconds(cutoff), event_types=expected["type_names"],
        values=np.nan_to_num(expected["values"], nan=1.0),
        config=prepare_config(revision.config, expected["negative_types"]))
    assert dataset.content_hash == reference.content_hash
    with default_storage.open(dataset.artifact) as handle, np.load(
            handle, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    m = prepared.matrix
    stored = {"data": m.data, "indices": m.indices, "indptr": m.indptr,
              "shape": np.array(m.shape), "user_ids": prepared.user_ids,
              "item_ids": prepared.item_ids,
              "suppression_user_ids": prepared.suppression_user_ids,
              "suppression_item_ids": prepared.suppression_item_ids}
    assert set(arrays) == set(stored) and m.nnz > 20 and len(prepared.suppression_user_ids)
    for name, array in stored.items():
        assert arrays[name].dtype == (np.int64 if "ids" in name else array.dtype), name
        np.testing.assert_array_equal(arrays[name], array, err_msg=name)


def test_events_already_in_order_are_not_sorted_again(monkeypatch):
    import mfplatform.training.event_stream as event_stream

    monkeypatch.setattr(event_stream, "_FLAG_CHUNK_ROWS", 3)  # checked across block edges
    stamps = np.array([1, 2, 2, 2, 5, 5, 9, 9, 9, 11])
    ids = np.array([4, 1, 2, 8, 3, 6, 0, 5, 7, 2])
    assert in_order(stamps, ids) and in_order(stamps[:1], ids[:1]) and in_order(
        stamps[:0], ids[:0])
    for at in range(len(stamps) - 1):  # any pair out of order, in any block, is seen
        swapped = np.arange(len(stamps))
        swapped[[at, at + 1]] = swapped[[at + 1, at]]
        assert not in_order(stamps[swapped], ids[swapped]), at


def _columns(sql: str, layout: RowLayout = EVENTS, chunk_rows: int = 3) -> dict:
    apply_scope(connection)
    with connection.cursor() as cursor:
        return copy_columns(cursor.cursor, sql, [], layout, chunk_rows)


_ALL_EVENTS = ("SELECT id, timestamp, user_id, item_id, event_type_id,"
               " coalesce(value, 'NaN')::float8 FROM catalog_event")


def test_row_level_security_applies_to_the_copy(tenant_a, tenant_b):
    cutoff = timezone.now()
    with tenant_b.scope():
        _plant(tenant_b.tenant, cutoff, n_events=50, seed=1)
        b_users = set(EndUser.objects.values_list("pk", flat=True))
    with tenant_a.scope():
        _plant(tenant_a.tenant, cutoff, n_events=60)
        a_users = set(EndUser.objects.values_list("pk", flat=True))
        # No tenant condition at all: the policy alone keeps tenant B's rows in the database.
        everything = _columns(_ALL_EVENTS)
        users = _columns("SELECT id, 0 FROM catalog_enduser", RowLayout(
            {"id": ">i8", "flags": ">i4"}))
        # Tenant B's id in the queries, tenant A's session: nothing.
        config = _plan_revision(tenant_a.tenant).config
        asked_for_b = load_events(tenant_b.tenant, config, cutoff + timedelta(days=3),
                                  chunk_rows=2)
    assert len(everything["id"]) == 60
    assert set(everything["user_id"].tolist()) <= a_users
    assert set(users["id"].tolist()) == a_users
    assert asked_for_b.counts["events_read"] == 0 and len(asked_for_b.user_ids) == 0
    # Without a tenant: no rows at all (the policy fails closed).
    assert len(_columns(_ALL_EVENTS)["id"]) == 0
    assert not b_users & a_users


def _raw_stream(sql: str) -> bytes:
    apply_scope(connection)
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY ({sql}) TO STDOUT (FORMAT binary)") as copy:
        return b"".join(bytes(block) for block in copy)


def _parse(blocks, chunk_rows: int) -> dict:
    chunks = list(parse_chunks(blocks, EVENTS, chunk_rows))
    assert all(len(chunk["id"]) >= chunk_rows for chunk in chunks[:-1])
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in EVENTS.columns}


def test_the_parser_takes_any_block_boundaries_and_refuses_a_broken_stream(tenant_a):
    cutoff = timezone.now()
    with tenant_a.scope():
        _plant(tenant_a.tenant, cutoff, n_events=80)
        types = list(EventType.objects.values_list("pk", flat=True))
        data = _raw_stream(EVENTS_SQL.replace("%s::int8[]", "ARRAY{}::int8[]").replace(
            "%s", "{}").format(tenant_a.tenant.pk, "'-infinity'", "'infinity'", types))
        with_null = _raw_stream(_ALL_EVENTS.replace("coalesce(value, 'NaN')::float8", "value"))
        expected = list(Event.objects.order_by("id").values_list("id", "value"))
    whole = _parse([data], chunk_rows=1_000)
    rng = np.random.default_rng(0)
    cuts = [0, *np.sort(rng.choice(np.arange(1, len(data)), size=60, replace=False)).tolist(),
            len(data)]
    pieces = _parse([memoryview(data)[a:b] for a, b in zip(cuts, cuts[1:], strict=False)],
                    chunk_rows=2)
    for name in EVENTS.columns:
        np.testing.assert_array_equal(whole[name], pieces[name])
    order = np.argsort(whole["id"])
    assert whole["id"][order].tolist() == [pk for pk, _value in expected]
    np.testing.assert_array_equal(whole["value"][order], [np.nan if value is None else value
                                                          for _pk, value in expected])
    with pytest.raises(CopyFormatError):
        _parse([data[:-1]], chunk_rows=2)  # ended early
    with pytest.raises(CopyFormatError):
        _parse([data[:-3] + data[-2:]], chunk_rows=2)  # ended inside a row
    with pytest.raises(CopyFormatError):
        _parse([b"not copy" + data], chunk_rows=2)
    with pytest.raises(CopyFormatError):  # a NULL value breaks the fixed layout
        _parse([with_null], chunk_rows=2)
