"""Precomputed top-N lists: the exact top items per user, replaced per plan."""

from collections import Counter

import numpy as np
import pytest

from mfengine.testing import reference_top_n
from mfplatform.registry.models import ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.serving.bundle import load_bundle
from mfplatform.serving.models import PrecomputedRecommendation
from mfplatform.serving.precompute import precompute_top_n
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, make_plan

pytestmark = pytest.mark.django_db


def test_lists_are_every_users_exact_top_n(served):
    with served.scope():
        assert precompute_top_n(served.version, n=15) == 300
        stored = dict(PrecomputedRecommendation.objects.values_list("user_id", "items"))
        bundle = load_bundle(served.version)
    model = bundle.model
    expected, expected_scores = reference_top_n(model.score(model.user_factors_), 15)
    assert len(stored) == 300
    for row, user_pk in enumerate(bundle.user_ids.tolist()):
        items = stored[user_pk]
        assert [pk for pk, _s in items] == bundle.item_pks(expected[row]).tolist()
        np.testing.assert_allclose([s for _pk, s in items], expected_scores[row], atol=1e-5)


def test_precomputing_one_plan_keeps_the_other_plans_lists(served):
    with served.scope():
        other = execute_run(queue_run(served.tenant, make_plan(served.tenant, "other",
                                                               **TEST_PLAN)))
        assert other.status == ModelStatus.ACTIVE, other.decision
        assert precompute_top_n(served.version, n=10) == 300
        assert precompute_top_n(other, n=10) == 300
        assert precompute_top_n(other, n=10) == 300  # again: replaces its own lists
        counts = Counter(PrecomputedRecommendation.objects
                         .values_list("model_version_id", flat=True))
    assert counts == {served.version.pk: 300, other.pk: 300}
