"""The conformance mixin over the baselines."""

from __future__ import annotations

import scipy.sparse as sp

from mfengine.baselines import ContentRecommender, PopularityRecommender
from mfengine.testing import BaselineConformance


class TestPopularityConformance(BaselineConformance):
    def make_model(self) -> PopularityRecommender:
        return PopularityRecommender()


class TestContentConformance(BaselineConformance):
    def make_model(self) -> ContentRecommender:
        return ContentRecommender()

    def fit_model(self, model: ContentRecommender, train: sp.csr_matrix) -> ContentRecommender:
        tokens = [[f"group={item % 7}", f"tag={item % 3}"] for item in range(train.shape[1])]
        return model.fit(train, tokens)
