"""Popularity and content baselines: ranking, the recommend contract, artifacts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mfengine.baselines import ContentRecommender, PopularityRecommender, item_tokens
from mfengine.testing import reference_top_n

DAY = 86400


def _matrix(rows, n_items, values=None):
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    v = np.ones(len(r)) if values is None else values
    return sp.csr_matrix((v, (r, c)), shape=(len(rows), n_items), dtype=np.float32)


# item 0: 4 users, item 1: 3, item 2: 2, item 3: 1, item 4: none
UI = _matrix([[0, 1, 2, 3], [0, 1, 2], [0, 1], [0]], 5)


def test_popularity_ranks_by_users_and_filters_seen():
    model = PopularityRecommender().fit(UI)
    ids, scores = model.recommend([3, 0], UI, n=3)
    assert ids[0].tolist() == [1, 2, 3]
    assert ids[1].tolist() == [4, -1, -1]  # user 0 saw 0..3; only item 4 (score 0) left
    assert scores[1, 1] == -np.inf
    ids, _ = model.recommend([0], UI, n=2, filter_seen=False, exclude=[0])
    assert ids[0].tolist() == [1, 2]
    ids, _ = model.recommend([3], UI, n=5, items=[3, 2])
    assert ids[0].tolist() == [2, 3, -1, -1, -1]


def test_popularity_strength_and_recency():
    ui = _matrix([[0, 1], [1]], 2, values=np.array([10.0, 1.0, 1.0]))
    assert PopularityRecommender().fit(ui).top_items(2)[0].tolist() == [1, 0]
    assert PopularityRecommender(use_strength=True).fit(ui).top_items(2)[0].tolist() == [0, 1]
    # item 1 was popular long ago, item 0 recently: with a 7-day half-life item 0 wins
    ui2 = _matrix([[0, 1], [1], [1]], 2)
    ts = ui2.copy()
    ts.data = np.array([100 * DAY, 0.0, 0.0, 0.0], dtype=np.float64)
    model = PopularityRecommender(half_life_days=7).fit(ui2, timestamps=ts)
    assert model.top_items(2)[0].tolist() == [0, 1]
    assert model.item_scores_[0] == pytest.approx(1.0)


def test_popularity_per_category_and_artifact(tmp_path):
    cats = np.array(["a", "b", "a", "b", "a"])
    model = PopularityRecommender().fit(UI, item_categories=cats)
    assert model.top_items(2, category="b")[0].tolist() == [1, 3]
    assert model.category_top_lists(2) == {"a": [0, 2], "b": [1, 3]}
    path = tmp_path / "pop.npz"
    model.save(path)
    loaded = PopularityRecommender.load(path)
    assert np.array_equal(loaded.recommend([2], UI, n=3)[0], model.recommend([2], UI, n=3)[0])
    assert loaded.top_items(1, category="a")[0].tolist() == [0]
    with pytest.raises(ValueError):
        ContentRecommender.load(path)


TOKENS = item_tokens(
    5,
    categories=["books", "books", "music", "music", "books"],
    tags=[["sf"], ["sf", "space"], ["jazz"], ["jazz", "live"], ["space"]],
)


def test_content_profile_prefers_similar_items_and_new_items():
    ui = _matrix([[0], [2], [1, 3]], 5)
    model = ContentRecommender().fit(ui, TOKENS)
    ids, scores = model.recommend([0, 1], ui, n=4)
    # user 0 read an sf book: the other sf/space books (1, 4: no interactions) come first
    assert set(ids[0, :2].tolist()) == {1, 4}
    assert ids[1, 0] == 3  # jazz -> jazz
    assert np.all(np.diff(scores, axis=1) <= 0)
    # L2-normalised rows
    norms = np.sqrt(np.asarray(model.item_vectors_.multiply(model.item_vectors_).sum(1)))
    assert np.allclose(norms, 1.0)


def test_content_recommend_for_items_and_cold_user():
    ui = _matrix([[0], [2], []], 5)
    model = ContentRecommender().fit(ui, TOKENS)
    ids, _ = model.recommend_for_items([2], n=2)
    assert ids[0] == 3 and 2 not in ids.tolist()
    # weights matter: mostly music with a little sf
    ids, _ = model.recommend_for_items([0, 3], weights=[0.1, 5.0], n=1)
    assert ids.tolist() == [2]
    # a user without history gets an empty list, so serving falls back to popularity
    ids, _ = model.recommend([2], ui, n=3)
    assert ids.tolist() == [[-1, -1, -1]]


def test_content_add_items_and_artifact(tmp_path):
    ui = _matrix([[0], [2]], 5)
    model = ContentRecommender().fit(ui, TOKENS)
    new = model.add_items([["category=music", "tag=jazz"], ["tag=unknown-token"]])
    assert new.tolist() == [5, 6]
    ids, _ = model.recommend_for_items([2], n=2)
    assert set(ids.tolist()) == {3, 5}
    path = tmp_path / "content.npz"
    model.save(path)
    loaded = ContentRecommender.load(path)
    ui7 = sp.csr_matrix(([1.0], ([0], [0])), shape=(2, 7), dtype=np.float32)
    assert np.array_equal(loaded.recommend([0], ui7, n=6)[0], model.recommend([0], ui7, n=6)[0])
    np.load(path, allow_pickle=False).close()


def test_recommend_checks_column_count():
    model = PopularityRecommender().fit(UI)
    with pytest.raises(ValueError):
        model.recommend([0], sp.csr_matrix((4, 3)), n=2)


# -- fast paths equal the straightforward dense computation ----------------------------------


def _reference_recommend(model, dense_scores, history, n, filter_seen, items, exclude):
    scores = np.array(dense_scores, dtype=np.float64)
    scores[:, ~model._candidate_mask(items, exclude)] = -np.inf
    if filter_seen:
        coo = sp.coo_matrix(history)
        scores[coo.row, coo.col] = -np.inf
    return reference_top_n(scores, n)


def _random_history(rng, n_users, n_items, density):
    m = sp.random(n_users, n_items, density=density, random_state=rng, format="csr")
    m.data = rng.integers(1, 4, m.nnz).astype(np.float32)  # strengths
    m.data[rng.random(m.nnz) < 0.05] = 0.0  # explicit zeros still count as seen
    return m


def _random_options(rng, n_items):
    items = None if rng.random() < 0.5 else rng.choice(n_items, n_items // 2, replace=False)
    exclude = None if rng.random() < 0.5 else rng.choice(n_items, 5, replace=False)
    n = int(rng.choice([1, 5, 17, n_items, n_items + 3]))
    return n, bool(rng.random() < 0.7), items, exclude


@pytest.mark.parametrize("seed", range(10))
def test_popularity_recommend_equals_dense_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 80, 60
    train = _random_history(rng, n_users, n_items, 0.08)  # small counts: many ties
    model = PopularityRecommender(use_strength=bool(seed % 2)).fit(train)
    users = rng.permutation(n_users)[:50]
    for _ in range(4):
        n, filter_seen, items, exclude = _random_options(rng, n_items)
        ids, scores = model.recommend(users, train, n, filter_seen, items, exclude)
        history = train[users]
        dense = np.tile(model.item_scores_, (len(users), 1))
        want_ids, want_scores = _reference_recommend(
            model, dense, history, n, filter_seen, items, exclude
        )
        assert np.array_equal(ids, want_ids)
        assert np.array_equal(scores, want_scores)
    top_ids, top_scores = model.top_items(7, exclude=[int(model.item_scores_.argmax())])
    ref_ids, ref_scores = reference_top_n(
        np.where(np.arange(n_items) == model.item_scores_.argmax(), -np.inf,
                 model.item_scores_)[None, :], 7)
    assert np.array_equal(top_ids, ref_ids[0]) and np.array_equal(top_scores, ref_scores[0])


@pytest.mark.parametrize("seed", range(10))
def test_content_recommend_equals_dense_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 70, 90
    train = _random_history(rng, n_users, n_items, 0.06)
    # users 0-4 without history: empty lists
    train = sp.vstack([sp.csr_matrix((5, n_items), dtype=np.float32), train[5:]]).tocsr()
    # few distinct descriptions: many exactly tied scores; some items have no tokens
    cats = [None if rng.random() < 0.1 else f"c{rng.integers(4)}" for _ in range(n_items)]
    tags = [[f"t{t}" for t in rng.choice(6, rng.integers(0, 3), replace=False)]
            for _ in range(n_items)]
    model = ContentRecommender(
        sublinear_tf=bool(seed % 2), popularity_tiebreak=seed % 3 != 0
    ).fit(train, item_tokens(n_items, categories=cats, tags=tags))
    users = rng.permutation(n_users)[:60]
    for _ in range(4):
        n, filter_seen, items, exclude = _random_options(rng, n_items)
        ids, scores = model.recommend(users, train, n, filter_seen, items, exclude)
        history = train[users]
        profiles = model.user_profiles(history)
        dense = np.asarray((profiles @ model.item_vectors_.T).todense(), dtype=np.float64)
        if model.popularity_tiebreak:
            dense += 1e-9 * model.item_popularity_[None, :]
        dense[np.diff(profiles.indptr) == 0] = -np.inf
        want_ids, want_scores = _reference_recommend(
            model, dense, history, n, filter_seen, items, exclude
        )
        assert np.array_equal(ids, want_ids)
        assert np.array_equal(scores, want_scores)
