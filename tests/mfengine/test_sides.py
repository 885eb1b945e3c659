"""A model in two files: the item side alone is small, reads without the user side, and the
two sides of different models never join."""

import io

import numpy as np
import pytest

import mfengine
from mfengine.als import ALS
from mfengine.testing import planted_split


def _saved(model, save) -> io.BytesIO:
    stream = io.BytesIO()
    save(model, stream)
    stream.seek(0)
    return stream


def test_the_item_side_holds_no_user_rows_and_older_readers_refuse_it() -> None:
    train, _ = planted_split()
    model = ALS(factors=8, iterations=2, random_state=0).fit(train)
    items = _saved(model, mfengine.save_item_side)
    with np.load(items, allow_pickle=False) as archive:
        assert "user_factors_" not in archive.files and "item_factors_" in archive.files
    whole = io.BytesIO()
    model.save(whole)
    # 400 users x 8 float32 factors are not in it
    assert len(items.getvalue()) < len(whole.getvalue()) - 400 * 8 * 4 + 1024
    assert mfengine.read_metadata(_saved(model, mfengine.save_item_side))[
        "format_version"] > mfengine.read_metadata(io.BytesIO(whole.getvalue()))["format_version"]
    with pytest.raises(ValueError, match="item side only"):
        mfengine.load(_saved(model, mfengine.save_item_side))
    with pytest.raises(ValueError, match="user side, not its item side"):
        mfengine.load_item_side(_saved(model, mfengine.save_user_side))


def test_sides_of_different_models_do_not_join() -> None:
    train, _ = planted_split()
    model = ALS(factors=8, iterations=2, random_state=0).fit(train)
    other = ALS(factors=4, iterations=2, random_state=0).fit(train)
    with pytest.raises(ValueError, match="different models"):
        mfengine.load_sides(_saved(model, mfengine.save_item_side),
                            _saved(other, mfengine.save_user_side))
    with pytest.raises(ValueError, match="not a model's user side"):
        mfengine.load_sides(_saved(model, mfengine.save_item_side),
                            _saved(model, mfengine.save_item_side))
