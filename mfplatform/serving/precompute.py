"""Top-N lists for every user of a model version, computed in bulk after promotion."""

from __future__ import annotations

import numpy as np
from django.db import transaction

from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.serving.bundle import ModelBundle, load_bundle
from mfplatform.serving.models import PrecomputedRecommendation

# Users whose lists are built and inserted together; the engine scores them against the
# catalogue a bounded block at a time, so memory does not grow with the catalogue times this.
BATCH = 2048


def precompute_top_n(version: ModelVersion, n: int = 100) -> int:
    """Store each user's best `n` items (rules are applied when serving, so the lists keep a
    margin), replacing the lists of the plan's versions; other plans' lists stay. Returns
    the number of users."""
    if version.kind != ModelKind.MF or version.status != ModelStatus.ACTIVE:
        return 0
    bundle = load_bundle(version)
    model = bundle.model
    n = min(n, len(bundle.item_ids))
    users = model.user_factors_.shape[0]
    with transaction.atomic():
        PrecomputedRecommendation.objects.filter(
            tenant=version.tenant, model_version__plan_id=version.plan_id).delete()
        for start in range(0, users, BATCH):
            columns, scores = model.recommend_vectors(model.user_factors_[start:start + BATCH],
                                                      n=n)
            PrecomputedRecommendation.objects.bulk_create(
                _lists(version, bundle, start, columns, scores), batch_size=1000)
    return users


def _lists(version: ModelVersion, bundle: ModelBundle, first_row: int, columns: np.ndarray,
           scores: np.ndarray) -> list[PrecomputedRecommendation]:
    """One row per user of the batch starting at `first_row`: [[item pk, score], ...]."""
    rows = []
    for offset, (user_columns, user_scores) in enumerate(zip(columns, scores, strict=True)):
        found = user_columns >= 0  # the engine pads with -1 when fewer items remain
        rows.append(PrecomputedRecommendation(
            tenant=version.tenant, model_version=version,
            user_id=int(bundle.user_ids[first_row + offset]),
            items=[[int(pk), round(float(score), 6)] for pk, score in zip(
                bundle.item_pks(user_columns[found]).tolist(), user_scores[found].tolist(),
                strict=True)]))
    return rows
