"""The synthetic generator and the MovieLens reader."""

from __future__ import annotations

import numpy as np
import pytest

from mfengine.datasets import load_movielens
from mfengine.synthetic import generate


def test_generate_shapes_types_and_seed() -> None:
    data = generate(n_users=300, n_items=120, n_interactions=5000, n_clusters=4, seed=1)
    assert data.user_ids.dtype == np.int64 and data.item_ids.dtype == np.int64
    assert data.values.dtype == np.float32 and (data.values == 1.0).all()
    assert data.timestamps.dtype == np.int64 and np.all(np.diff(data.timestamps) >= 0)
    assert data.user_ids.size == data.item_ids.size == data.event_types.size == 5000
    assert len(data.item_categories) == len(data.item_titles) == len(data.item_tags) == 120
    assert set(np.unique(data.user_ids)) == set(range(300))  # every user has an event
    assert set(data.event_types) <= {"click", "add_to_cart", "purchase", "watch_complete"}
    again = generate(n_users=300, n_items=120, n_interactions=5000, n_clusters=4, seed=1)
    np.testing.assert_array_equal(data.item_ids, again.item_ids)
    other = generate(n_users=300, n_items=120, n_interactions=5000, n_clusters=4, seed=2)
    assert not np.array_equal(data.item_ids, other.item_ids)
    matrix = data.to_csr()
    assert matrix.shape == (300, 120) and matrix.dtype == np.float32
    assert matrix.sum() == pytest.approx(5000)


def test_generate_has_planted_structure() -> None:
    data = generate(n_users=2000, n_items=400, n_interactions=60000, n_clusters=8, seed=0)
    inside = data.item_clusters[data.item_ids] == data.user_clusters[data.user_ids]
    assert 0.75 < inside.mean() < 0.9
    # categories follow clusters one to one
    for cluster in range(8):
        assert len(set(data.item_categories[data.item_clusters == cluster])) == 1
    # power-law popularity: the top 10% of items take far more than 10% of events
    counts = np.sort(np.bincount(data.item_ids, minlength=400))[::-1]
    assert counts[:40].sum() > 0.4 * counts.sum()
    # heavy-tailed activity: the busiest user has many times the median
    activity = np.bincount(data.user_ids)
    assert activity.max() > 8 * np.median(activity)


def test_generate_ratings() -> None:
    data = generate(n_users=500, n_items=200, n_interactions=20000, ratings=True, seed=3)
    assert set(np.unique(data.values)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    inside = data.item_clusters[data.item_ids] == data.user_clusters[data.user_ids]
    assert data.values[inside].mean() > data.values[~inside].mean() + 0.5


def test_load_movielens(tmp_path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964981247\n"
        "7,10,5.0,964982224\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n'
        "20,Nothing (2000),(no genres listed)\n"
    )
    data = load_movielens(tmp_path)
    np.testing.assert_array_equal(data.user_ids, [1, 1, 7])
    np.testing.assert_array_equal(data.item_ids, [10, 20, 10])
    assert data.values.dtype == np.float32 and data.values.tolist() == [4.0, 3.5, 5.0]
    assert data.timestamps.dtype == np.int64
    assert data.titles == ["Heat, The (1995)", "Nothing (2000)"]
    assert data.genres == [["Action", "Crime"], []]
    matrix = data.to_csr()
    assert matrix.shape == (2, 2) and matrix[1, 0] == 5.0


def test_load_movielens_missing_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_movielens(tmp_path / "nowhere")
