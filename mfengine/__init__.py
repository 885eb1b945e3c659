"""mfengine: matrix-factorization strategies behind one interface (no Django).

    >>> import mfengine
    >>> model = mfengine.create("als", factors=32, random_state=0).fit(user_items)
    >>> ids, scores = model.recommend([0, 1], user_items, n=10)
"""

__version__ = "0.1.0"

from mfengine.base import (  # noqa: E402
    MatrixFactorization,
    NonFiniteFactorsError,
    NotFittedError,
    load,
    read_metadata,
)
from mfengine.plugins import available, create, get_strategy  # noqa: E402

Recommender = MatrixFactorization

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
    "read_metadata",
]
