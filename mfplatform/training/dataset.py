"""DatasetVersion: a tenant's events at a cutoff, filtered and prepared by mfengine.data.

Events are read through the tenant's context (row-level security on), by internal ids: user
and item primary keys are stable within the tenant, and the vectors published later reference
them directly.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction

from mfengine.data import PrepareConfig, PreparedData, prepare_interactions
from mfplatform.training.event_stream import FILTER_BITS, stream_events
from mfplatform.training.models import DatasetVersion, PlanRevision
from tenants.context import apply_scope
from tenants.models import Tenant


@dataclass
class EventArrays:
    """One entry per event, in time order. Event types are small integer codes into a name
    table (one entry per type of the tenant), never a name per event."""

    user_ids: np.ndarray  # int64 EndUser primary keys
    item_ids: np.ndarray  # int64 Item primary keys
    type_codes: np.ndarray  # small ints: positions in type_table
    type_table: np.ndarray  # str: the event type names the codes index
    values: np.ndarray  # float64, NaN where the event had no value
    timestamps: np.ndarray  # int64 unix seconds (rounded down)
    counts: dict[str, int]
    # Types the catalogue marks negative (hide, dislike): whatever weight a plan gives them,
    # they suppress and never count as interest, in the model or in popularity.
    negative_types: frozenset[str] = frozenset()

    @property
    def type_names(self) -> np.ndarray:
        """The type name of each event (a str array as long as the events: for small uses)."""
        return self.type_table[self.type_codes]

    def of_types(self, names) -> np.ndarray:
        """Mask of the events whose type is one of `names`, by code (no name per event)."""
        wanted = np.isin(self.type_table, np.array(list(names), dtype=str))
        return wanted[self.type_codes]

    def take(self, mask: np.ndarray) -> EventArrays:
        return EventArrays(self.user_ids[mask], self.item_ids[mask], self.type_codes[mask],
                           self.type_table, self.values[mask], self.timestamps[mask],
                           dict(self.counts), self.negative_types)


def prepare_config(config: dict, negative_types: frozenset[str] = frozenset()) -> PrepareConfig:
    """mfengine's settings for the plan."""
    transform = config["transform"]
    weights = dict(config["events"])
    negatives = set(config["negative_events"]) | negative_types
    return PrepareConfig(
        event_weights=weights,
        negative_event_types=tuple(sorted(negatives)),
        use_values=transform["use_values"],
        half_life_days=config["window"]["recency_half_life_days"],
        window_days=config["window"]["days"],
        log1p=transform["log1p"],
        max_events_per_user=transform["max_events_per_user"],
        max_events_per_item=transform["max_events_per_item"],
        max_strength=transform["max_strength"],
    )


def load_events(tenant: Tenant, config: dict, cutoff: datetime,
                chunk_rows: int | None = None) -> EventArrays:
    """The tenant's events in the plan's window before the cutoff, with the plan's filters
    applied and the number dropped by each filter counted. Policy events never load. The rows
    stream out of Postgres `chunk_rows` at a time (DATASET_READ_CHUNK_ROWS) into numpy
    (mfplatform.training.event_stream)."""
    window_days = config["window"]["days"]
    start = cutoff - timedelta(days=window_days) if window_days else datetime.min.replace(
        tzinfo=cutoff.tzinfo)
    wanted = set(config["events"]) | set(config["negative_events"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name, kind FROM catalog_eventtype WHERE tenant_id = %s"
                       " ORDER BY id", [tenant.pk])
        type_rows = cursor.fetchall()
        loaded = [(pk, name) for pk, name, kind in type_rows
                  if name in wanted and kind != "policy"]
        apply_scope(connection)  # COPY runs on the raw cursor, past Django's statement hooks
        streamed = stream_events(
            cursor.cursor, tenant.pk, start, cutoff,
            np.array([pk for pk, _name in loaded], dtype=np.int64),
            {name: FILTER_BITS[name] for name in config["filters"]},
            chunk_rows or settings.DATASET_READ_CHUNK_ROWS)
    negative_types = frozenset(name for _pk, name, kind in type_rows if kind == "negative")
    return EventArrays(streamed.user_ids, streamed.item_ids, streamed.type_codes,
                       np.array([name for _pk, name in loaded], dtype=str), streamed.values,
                       streamed.timestamps, streamed.counts, negative_types)


def cutoff_seconds(cutoff: datetime) -> int:
    """The cutoff in whole unix seconds, rounded up: event times are rounded down (floor in
    load_events), and every event loaded is strictly before the exact cutoff, so each stays
    before this one too (truncating both dropped the last second's events)."""
    return math.ceil(cutoff.timestamp())


def prepare(events: EventArrays, config: dict, cutoff: datetime,
            catalogue_item_ids: np.ndarray | None = None) -> PreparedData:
    """mfengine's matrix of the events. Types go as their codes with the name table (no name
    per event: a str per event cost 0.5 GB at 10M events, sorting them seconds), values only
    when the plan uses them (a float copy per event otherwise)."""
    use_values = config["transform"]["use_values"]
    return prepare_interactions(
        events.user_ids, events.item_ids, events.timestamps, cutoff=cutoff_seconds(cutoff),
        event_types=events.type_codes, event_type_names=events.type_table,
        values=np.nan_to_num(events.values, nan=1.0) if use_values else None,
        config=prepare_config(config, events.negative_types),
        catalogue_item_ids=catalogue_item_ids)


def save_prepared(prepared: PreparedData, name: str) -> str:
    """The .npz artifact, compressed into a temporary file and handed to the storage from
    there (in memory it was the compressed bytes twice: the buffer and its copy)."""
    m = prepared.matrix
    with tempfile.TemporaryFile(suffix=".npz") as handle:
        np.savez_compressed(
            handle, data=m.data, indices=m.indices, indptr=m.indptr, shape=np.array(m.shape),
            user_ids=prepared.user_ids.astype(np.int64, copy=False),
            item_ids=prepared.item_ids.astype(np.int64, copy=False),
            suppression_user_ids=prepared.suppression_user_ids.astype(np.int64, copy=False),
            suppression_item_ids=prepared.suppression_item_ids.astype(np.int64, copy=False))
        handle.seek(0)
        return default_storage.save(name, File(handle, name=name.rsplit("/", 1)[-1]))


def build_dataset_version(tenant: Tenant, revision: PlanRevision, cutoff: datetime,
                          events: EventArrays | None = None
                          ) -> tuple[DatasetVersion, EventArrays, PreparedData]:
    """The dataset version of (revision, cutoff): built once; a second build of the same pair
    (a retried task) returns the stored one, whose hash is the same by construction."""
    config = revision.config
    events = events if events is not None else load_events(tenant, config, cutoff)
    prepared = prepare(events, config, cutoff)
    existing = DatasetVersion.objects.filter(tenant=tenant, plan_revision=revision,
                                             cutoff=cutoff).first()
    if existing is not None:
        return existing, events, prepared
    counts = {**events.counts, **{k: int(v) for k, v in prepared.counts.items()}}
    path = save_prepared(prepared, f"datasets/{tenant.pk}/{revision.plan_id}/"
                                   f"{int(cutoff.timestamp())}-{prepared.content_hash[:16]}.npz")
    try:
        with transaction.atomic():
            dataset = DatasetVersion.objects.create(
                tenant=tenant, plan_revision=revision, cutoff=cutoff,
                content_hash=prepared.content_hash, n_users=prepared.shape[0],
                n_items=prepared.shape[1], n_interactions=int(prepared.matrix.nnz),
                counts=counts, artifact=path)
    except IntegrityError:  # built concurrently by a retry: keep the first
        default_storage.delete(path)
        dataset = DatasetVersion.objects.get(tenant=tenant, plan_revision=revision,
                                             cutoff=cutoff)
    return dataset, events, prepared
