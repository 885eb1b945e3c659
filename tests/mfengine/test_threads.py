"""The engine's hot calls run with BLAS at one thread and numba at the model's num_threads,
whatever the caller set, and give the caller's settings back afterwards (issue #21)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from mfengine.als import ALS
from mfengine.testing import planted_split

CALLER_BLAS_THREADS = 2


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


class RecordingALS(ALS):
    """ALS that records the thread settings from inside fold-in and top-n (through hooks
    those calls run, not through the wrapped methods themselves)."""

    def _fold_in_inputs(self, item_ids: Any, strengths: Any) -> tuple[np.ndarray, np.ndarray]:
        self.seen_settings.append(("fold_in", blas_threads(), numba.get_num_threads()))
        return super()._fold_in_inputs(item_ids, strengths)

    def _item_bias(self) -> np.ndarray | None:
        self.seen_settings.append(("top_n", blas_threads(), numba.get_num_threads()))
        return None


@pytest.fixture
def user_items():
    return planted_split()[0]


def test_fit_fold_in_and_top_n_limit_blas_and_restore_the_caller(user_items):
    assert numba.config.NUMBA_NUM_THREADS >= 1
    model = RecordingALS(factors=4, iterations=2, num_threads=1, random_state=0)
    model.seen_settings = []
    previous_numba = numba.get_num_threads()

    def during_fit(iteration: int, loss: float) -> None:
        model.seen_settings.append(("fit", blas_threads(), numba.get_num_threads()))

    with threadpool_limits(limits=CALLER_BLAS_THREADS, user_api="blas"):
        assert blas_threads() == {CALLER_BLAS_THREADS}
        model.fit(user_items, callback=during_fit)
        assert blas_threads() == {CALLER_BLAS_THREADS}
        model.fold_in([0, 1, 2])
        assert blas_threads() == {CALLER_BLAS_THREADS}
        model.recommend([0, 1], user_items, n=5)
        assert blas_threads() == {CALLER_BLAS_THREADS}
    assert numba.get_num_threads() == previous_numba

    calls = [name for name, _, _ in model.seen_settings]
    assert calls.count("fit") == 2 and "fold_in" in calls and "top_n" in calls
    for name, blas, numba_count in model.seen_settings:
        assert blas == {1}, name
        assert numba_count == 1, name


def test_num_threads_defaults_to_every_core(user_items):
    model = RecordingALS(factors=4, iterations=1, random_state=0)
    model.seen_settings = []
    numba.set_num_threads(1)
    try:
        model.fit(user_items, callback=lambda i, loss: model.seen_settings.append(
            ("fit", blas_threads(), numba.get_num_threads())
        ))
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert model.seen_settings[0][2] == numba.config.NUMBA_NUM_THREADS
