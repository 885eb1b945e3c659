"""Positions of ids in a sorted id array: the one lookup the engine and the platform share."""

from __future__ import annotations

import numpy as np


def positions(sorted_ids: np.ndarray, values) -> np.ndarray:
    """Index of each value in `sorted_ids` (ascending, unique int64), or -1 where absent."""
    values = np.asarray(values, dtype=np.int64)
    if sorted_ids.size == 0 or values.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, values), 0, sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == values, pos, -1)
