"""mfengine: matrix-factorization strategies behind one interface (no Django).

    >>> import mfengine
    >>> model = mfengine.create("als", factors=32, random_state=0).fit(user_items)
    >>> ids, scores = model.recommend([0, 1], user_items, n=10)
"""

from mfengine.base import (
    MatrixFactorization,
    NonFiniteFactorsError,
    NotFittedError,
    load,
    read_metadata,
)
from mfengine.plugins import available, create, get_strategy
from mfengine.recommender import Recommender
from mfengine.sides import load_item_side, load_sides, save_item_side, save_user_side
from mfengine.version import __version__

__all__ = [
    "MatrixFactorization",
    "NonFiniteFactorsError",
    "NotFittedError",
    "Recommender",
    "__version__",
    "available",
    "create",
    "get_strategy",
    "load",
    "load_item_side",
    "load_sides",
    "read_metadata",
    "save_item_side",
    "save_user_side",
]
