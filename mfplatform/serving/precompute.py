"""Top-N lists for every user of a model version, computed in bulk after promotion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction

from mfplatform.registry.models import ModelKind, ModelStatus, ModelVersion
from mfplatform.registry.vectors import cold_item_vectors
from mfplatform.serving.bundle import ModelBundle, load_bundle
from mfplatform.serving.models import PrecomputedRecommendation

# Users whose lists are built and inserted together; the engine scores them against the
# catalogue a bounded block at a time, so memory does not grow with the catalogue times this.
BATCH = 2048
# New items placed by their content (registry.cold) scored together against a batch of users.
COLD_BLOCK = 8192
# First key of the advisory lock that makes a plan's precomputes take turns.
PRECOMPUTE_LOCK = 0x70726563


def precompute_top_n(version: ModelVersion, n: int = 100) -> int:
    """Store each user's best `n` items (rules are applied when serving, so the lists keep a
    margin), replacing the lists of the plan's versions; other plans' lists stay. New items
    placed in the version by their content (registry.cold) compete with the trained ones and
    are stored with their placement ([item pk, score, placement]). Returns the number of
    users."""
    if version.kind != ModelKind.MF or version.status != ModelStatus.ACTIVE:
        return 0
    bundle = load_bundle(version)
    model = bundle.model
    cold = ColdItems(*cold_item_vectors(version))
    n = min(n, len(bundle.item_ids) + len(cold.pks))
    users = model.user_factors_.shape[0]
    with transaction.atomic():
        # Two precomputes of one plan (a redelivered task, a promotion right after another)
        # take turns: otherwise neither deletes the other's uncommitted lists and the second
        # to commit fails on the unique (version, user) constraint.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PRECOMPUTE_LOCK,
                                                                   version.plan_id])
        if not ModelVersion.objects.filter(pk=version.pk, status=ModelStatus.ACTIVE).exists():
            return 0  # replaced while waiting: the newer version's precompute writes the lists
        PrecomputedRecommendation.objects.filter(
            tenant=version.tenant, model_version__plan_id=version.plan_id).delete()
        for start in range(0, users, BATCH):
            factors = model.user_factors_[start:start + BATCH]
            columns, scores = model.recommend_vectors(factors, n=min(n, len(bundle.item_ids)))
            PrecomputedRecommendation.objects.bulk_create(
                _lists(version, bundle, start, columns, scores, cold,
                       cold.top(model.user_vectors(factors), n), n), batch_size=1000)
    return users


@dataclass
class ColdItems:
    """The version's items placed by their content: pks, vectors (as wide as the index's,
    bias component included) and placements."""

    pks: np.ndarray
    vectors: np.ndarray
    placements: list[str]

    def top(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(Row indices, scores) of each query's best `n` placed items, best first. Scored a
        block of COLD_BLOCK items at a time: memory stays bounded however many there are."""
        best = np.zeros((len(queries), 0), np.int64)
        best_scores = np.zeros((len(queries), 0), np.float32)
        for start in range(0, len(self.pks), COLD_BLOCK):
            block = (queries @ self.vectors[start:start + COLD_BLOCK].T).astype(np.float32)
            rows = np.broadcast_to(np.arange(start, start + block.shape[1]), block.shape)
            best = np.hstack([best, rows])
            best_scores = np.hstack([best_scores, block])
            if best.shape[1] > n:
                keep = np.argpartition(-best_scores, n - 1, axis=1)[:, :n]
                best = np.take_along_axis(best, keep, axis=1)
                best_scores = np.take_along_axis(best_scores, keep, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        return (np.take_along_axis(best, order, axis=1),
                np.take_along_axis(best_scores, order, axis=1))

    def entries(self, rows: np.ndarray, scores: np.ndarray) -> list[list]:
        return [[int(self.pks[row]), round(float(score), 6), self.placements[row]]
                for row, score in zip(rows.tolist(), scores.tolist(), strict=True)]


def _lists(version: ModelVersion, bundle: ModelBundle, first_row: int, columns: np.ndarray,
           scores: np.ndarray, cold: ColdItems, cold_top: tuple[np.ndarray, np.ndarray],
           n: int) -> list[PrecomputedRecommendation]:
    """One row per user of the batch starting at `first_row`: [[item pk, score], ...], with
    each user's best placed items (`cold_top`, from ColdItems.top) merged in by score and
    the list cut at `n`."""
    rows = []
    cold_rows, cold_scores = cold_top
    for offset, (user_columns, user_scores) in enumerate(zip(columns, scores, strict=True)):
        found = user_columns >= 0  # the engine pads with -1 when fewer items remain
        items = [[int(pk), round(float(score), 6)] for pk, score in zip(
            bundle.item_pks(user_columns[found]).tolist(), user_scores[found].tolist(),
            strict=True)]
        if cold_rows.shape[1]:
            items = sorted(items + cold.entries(cold_rows[offset], cold_scores[offset]),
                           key=lambda entry: -entry[1])[:n]
        rows.append(PrecomputedRecommendation(
            tenant=version.tenant, model_version=version,
            user_id=int(bundle.user_ids[first_row + offset]), items=items))
    return rows
