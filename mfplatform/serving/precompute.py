"""Top-N lists for every user of a model version, computed in bulk after promotion."""

from __future__ import annotations

import numpy as np
from django.db import transaction

from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.serving.bundle import load_bundle
from mfplatform.serving.models import PrecomputedRecommendation

BATCH = 2048


def precompute_top_n(version: ModelVersion, n: int = 100) -> int:
    """Store each user's best `n` items (rules are applied when serving, so the lists keep a
    margin); earlier versions' lists are dropped. Returns the number of users."""
    if version.kind != ModelKind.MF or version.status != ModelStatus.ACTIVE:
        return 0
    bundle = load_bundle(version)
    model = bundle.model
    n = min(n, len(bundle.item_ids))
    users = model.user_factors_.shape[0]
    rows: list[PrecomputedRecommendation] = []
    with transaction.atomic():
        PrecomputedRecommendation.objects.filter(tenant=version.tenant).delete()
        for start in range(0, users, BATCH):
            scores = model.score(model.user_factors_[start:start + BATCH])
            top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            item_pks = bundle.item_ids[top]
            for offset in range(top.shape[0]):
                rows.append(PrecomputedRecommendation(
                    tenant=version.tenant, model_version=version,
                    user_id=int(bundle.user_ids[start + offset]),
                    items=[[int(p), round(float(s), 6)] for p, s in
                           zip(item_pks[offset], top_scores[offset], strict=True)]))
            PrecomputedRecommendation.objects.bulk_create(rows, batch_size=1000)
            rows.clear()
    return users
