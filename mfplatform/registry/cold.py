"""New items in the active model versions: items added to the catalogue after a version was
trained get a vector from their content (the version's `cold.npz`, an mfengine.cold mapping
fitted at training), inserted into the version's pgvector partition flagged cold, so that
the candidate search finds them until a version trained on their events replaces it.

Queued after every catalogue batch that wrote items (debounced per tenant) and after every
promotion or rollback (the newly active version was trained on the items known then; what
came later is placed now)."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F

from mfengine.baselines import item_tokens
from mfengine.cold import ContentToFactors
from mfplatform.registry.artifacts import open_artifact
from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.registry.signals import items_placed
from mfplatform.registry.vectors import add_cold_item_vectors, partition_name
from tenants.models import Tenant

log = logging.getLogger(__name__)

MAPPING_FILE = "cold.npz"
# Batches arriving within this many seconds of a queued placement are covered by it.
DEBOUNCE_SECONDS = 5
_LOCK_CLASS = 0x636F6C64  # "cold": placements of one version take turns (advisory lock)


def place_cold_items(tenant: Tenant) -> dict[int, int]:
    """Place the tenant's unplaced items in each of its active MF versions. Returns
    {model version pk: vectors added}."""
    versions = ModelVersion.objects.filter(tenant=tenant, status=ModelStatus.ACTIVE,
                                           kind=ModelKind.MF).defer("report", "checks")
    return {version.pk: place_in_version(version) for version in versions}


def place_in_version(version: ModelVersion) -> int:
    """Vectors for the items of the version's tenant it has none for (not deleted, not
    placeholders), from the version's content mapping; 0 without a usable mapping."""
    mapping = load_mapping(version)
    if mapping is None:
        return 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, version.pk])
            cursor.execute(
                f"SELECT i.id, i.category, i.tags, i.attributes FROM catalog_item i "
                f"WHERE i.tenant_id = %s AND i.deleted_at IS NULL AND NOT i.is_placeholder "
                f"AND NOT EXISTS (SELECT 1 FROM {partition_name('item', version.pk)} v "
                f"WHERE v.item_id = i.id) ORDER BY i.id", [version.tenant_id])
            rows = cursor.fetchall()
        if not rows:
            return 0
        tokens = item_tokens(len(rows), categories=[r[1] for r in rows],
                             tags=[r[2] or [] for r in rows], attributes=[
                                 _as_dict(r[3]) for r in rows])
        vectors, placements = mapping.transform(tokens)
        added = add_cold_item_vectors(version, np.array([r[0] for r in rows]), vectors,
                                      placements)
        # The version's vector count is every row of its partition, placed ones included
        # (serving's candidate search over-fetches up to it).
        ModelVersion.objects.filter(pk=version.pk).update(
            n_item_vectors=F("n_item_vectors") + added)
        version.n_item_vectors += added
        if added:
            transaction.on_commit(lambda: items_placed.send(sender=ModelVersion,
                                                            version=version))
    log.info("model v%s of tenant %s: %d new items placed by their content", version.version,
             version.tenant_id, added)
    return added


def load_mapping(version: ModelVersion) -> ContentToFactors | None:
    """The version's content mapping, its bytes checked against the sha256 recorded at
    publication; None (logged) when the version has none (published before cold start, or
    trained without items' content) or the file is gone or damaged."""
    expected = (version.checksums or {}).get(MAPPING_FILE)
    if expected is None:
        return None
    try:
        with open_artifact(version, MAPPING_FILE) as handle:
            data = handle.read()
    except OSError as exc:
        log.error("model v%s: %s cannot be read: %s", version.version, MAPPING_FILE, exc)
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        log.error("model v%s: %s is not the file that was published (checksum mismatch); "
                  "new items are not placed", version.version, MAPPING_FILE)
        return None
    mapping = ContentToFactors.load(io.BytesIO(data))
    if mapping.dimensions != version.dimensions:
        log.error("model v%s: %s places %d dimensions, the version has %d", version.version,
                  MAPPING_FILE, mapping.dimensions, version.dimensions)
        return None
    return mapping


def _as_dict(value) -> dict:
    return json.loads(value) if isinstance(value, str | bytes) else (value or {})


def queue_placement(tenant_id: int) -> None:
    """Queue the tenant's placement in a few seconds, unless one is already queued: a bulk
    import's batches share one placement (per process when the cache is not shared)."""
    from mfplatform.registry.tasks import place_new_items  # the task module imports this one

    if cache.add(f"registry:cold-placement:{tenant_id}", 1, timeout=DEBOUNCE_SECONDS):
        place_new_items.apply_async((tenant_id,), countdown=DEBOUNCE_SECONDS)
