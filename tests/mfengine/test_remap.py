"""A previous model evaluated on a new split's id space (mfengine.remap)."""

import numpy as np
import scipy.sparse as sp

from mfengine.als import ALS
from mfengine.remap import RemappedModel
from mfengine.testing import planted_split


def _direct(model, train, users, n):
    vectors = np.stack([model.fold_in(train[u].indices, train[u].data) for u in users])
    return model.recommend_vectors(vectors, n=n, seen=train[users])[0]


def test_same_numbering_gives_the_folded_in_recommendations():
    train, _ = planted_split()
    model = ALS(factors=8, iterations=5, random_state=0).fit(train)
    users = np.arange(12)
    ids, _ = RemappedModel(model, np.arange(train.shape[1])).recommend(users, train, n=5)
    np.testing.assert_array_equal(ids, _direct(model, train, users, 5))


def test_another_numbering_and_unknown_items_give_the_same_items():
    train, _ = planted_split()
    model = ALS(factors=8, iterations=5, random_state=0).fit(train)
    users = np.arange(12)
    reverse = np.arange(train.shape[1])[::-1]  # item j of the new space is the model's reverse[j]
    columns = np.concatenate([reverse, [-1, -1]])  # and two items the model never saw
    new_train = sp.hstack([train[:, reverse],
                           sp.csr_matrix(np.ones((train.shape[0], 2), np.float32))]).tocsr()
    ids, _ = RemappedModel(model, columns).recommend(users, new_train, n=5)
    assert ids.max() < train.shape[1]  # the unknown items are never recommended
    np.testing.assert_array_equal(reverse[ids], _direct(model, train, users, 5))


def test_items_are_matched_by_id():
    train, _ = planted_split()
    model = ALS(factors=4, iterations=1, random_state=0).fit(train[:, :3])
    remapped = RemappedModel.from_ids(model, np.array([10, 20, 30]), np.array([30, 5, 10]))
    np.testing.assert_array_equal(remapped.item_columns, [2, -1, 0])
