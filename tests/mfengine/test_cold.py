"""Cold-start vectors: the content-to-factor mapping and segment means."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mfengine.baselines import item_tokens
from mfengine.cold import ContentToFactors, SegmentVectors
from mfengine.recommender import NotFittedError


def _planted(n_items=600, factors=8, n_tags=40, seed=0):
    """Items whose vectors are their category's direction plus their tags' directions: a
    mapping from content to vectors exists and can be learned."""
    rng = np.random.default_rng(seed)
    category_dirs = rng.normal(size=(5, factors))
    tag_dirs = rng.normal(size=(n_tags, factors))
    categories = rng.integers(0, 5, n_items)
    tags = [rng.choice(n_tags, 3, replace=False) for _ in range(n_items)]
    vectors = np.stack([category_dirs[c] + tag_dirs[t].sum(axis=0)
                        for c, t in zip(categories, tags, strict=True)])
    vectors += rng.normal(scale=0.1, size=vectors.shape)
    tokens = item_tokens(n_items, categories=[f"c{c}" for c in categories],
                         tags=[[f"t{x}" for x in t] for t in tags])
    return tokens, vectors.astype(np.float32), categories


def test_the_mapping_places_unseen_items_near_their_true_vectors():
    tokens, vectors, _ = _planted()
    train, test = slice(0, 500), slice(500, None)
    mapping = ContentToFactors(regularization=0.1, norm_quantile=None).fit(
        tokens[train], vectors[train])
    placed, placements = mapping.transform(tokens[test])
    assert set(placements) == {"attributes"}
    truth = vectors[test]
    cosine = np.sum(placed * truth, axis=1) / (
        np.linalg.norm(placed, axis=1) * np.linalg.norm(truth, axis=1))
    baseline = truth - truth.mean(axis=0)
    # Far closer than the catalogue's mean (the fallback) would be.
    assert np.mean(cosine) > 0.9
    assert np.mean((placed - truth) ** 2) < 0.2 * np.mean(baseline ** 2)


def test_items_without_attributes_get_their_category_mean_else_the_catalogue_mean():
    tokens, vectors, categories = _planted()
    mapping = ContentToFactors(norm_quantile=None).fit(tokens, vectors)
    placed, placements = mapping.transform([["category=c2"], ["category=unknown"], [],
                                            ["tag=never-seen"]])
    assert placements == ["category", "catalogue", "catalogue", "catalogue"]
    np.testing.assert_allclose(placed[0], vectors[categories == 2].mean(axis=0), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(placed[1], vectors.mean(axis=0), rtol=1e-5, atol=1e-5)
    assert placed.dtype == np.float32 and placed.shape == (4, vectors.shape[1])


def test_placed_vectors_keep_their_direction_at_the_trained_items_upper_norm():
    tokens, vectors, _ = _planted()
    shrunk = ContentToFactors(norm_quantile=None).fit(tokens[:500], vectors[:500])
    loud = ContentToFactors().fit(tokens[:500], vectors[:500])
    target = np.quantile(np.linalg.norm(vectors[:500], axis=1), 0.9)
    quiet, _ = shrunk.transform(tokens[500:] + [["category=c1"]])
    placed, kinds = loud.transform(tokens[500:] + [["category=c1"], []])
    np.testing.assert_allclose(np.linalg.norm(placed[:-1], axis=1), target, rtol=1e-4)
    cosine = np.sum(placed[:-1] * quiet, axis=1) / (
        np.linalg.norm(placed[:-1], axis=1) * np.linalg.norm(quiet, axis=1))
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-4)
    # An item with nothing to place it by stays at the catalogue's mean.
    assert kinds[-1] == "catalogue"
    np.testing.assert_allclose(placed[-1], vectors[:500].mean(axis=0), rtol=1e-4, atol=1e-5)


def test_saved_and_loaded_without_pickle_it_places_the_same():
    tokens, vectors, _ = _planted(n_items=200)
    mapping = ContentToFactors().fit(tokens, vectors)
    for other in (ContentToFactors(norm_quantile=None).fit(tokens, vectors),):
        buffer = io.BytesIO()
        other.save(buffer)
        buffer.seek(0)
        assert ContentToFactors.load(buffer).norm_quantile is None
    buffer = io.BytesIO()
    mapping.save(buffer)
    buffer.seek(0)
    loaded = ContentToFactors.load(buffer)
    before, kinds_before = mapping.transform(tokens[:20] + [["category=c1"]])
    after, kinds_after = loaded.transform(tokens[:20] + [["category=c1"]])
    np.testing.assert_array_equal(before, after)
    assert kinds_before == kinds_after


def test_categories_beyond_the_one_hot_limit_are_hashed_and_still_mapped():
    tokens, vectors, _ = _planted(n_items=300)
    mapping = ContentToFactors(max_categories=2).fit(tokens, vectors)
    assert len(mapping.onehot_categories_) == 2
    placed, placements = mapping.transform(tokens[:10])
    assert np.isfinite(placed).all() and set(placements) == {"attributes"}


def test_bad_input_and_unfitted_use_are_refused():
    with pytest.raises(NotFittedError):
        ContentToFactors().transform([["tag=a"]])
    with pytest.raises(ValueError, match="one token list"):
        ContentToFactors().fit([["tag=a"]], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        ContentToFactors().fit([["tag=a"]], np.array([[np.nan, 1.0]]))


def test_segment_vectors_are_the_means_of_their_users():
    vectors = np.array([[1, 0], [3, 0], [0, 2], [5, 5]], dtype=np.float32)
    segments = SegmentVectors().fit(["a", "a", "b", None], vectors)
    np.testing.assert_allclose(segments.vector("a"), [2, 0])
    np.testing.assert_allclose(segments.vector("b"), [0, 2])
    assert segments.vector("c") is None and segments.vector(None) is None
    assert SegmentVectors(min_users=2).fit(["a", "a", "b", None], vectors).vector("b") is None
    buffer = io.BytesIO()
    segments.save(buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(SegmentVectors.load(buffer).vector("a"), segments.vector("a"))
