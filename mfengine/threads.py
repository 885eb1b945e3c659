"""Thread pools inside the engine's hot calls, whatever the caller's environment.

The compiled kernels run their own parallel loops (numba) around small BLAS calls; a BLAS pool
of several threads next to them only busy-waits against numba's workers and the matrix
products are too small to gain from it. Measured on a 2-core machine, ALS fit was 1.7x slower
with OpenBLAS at its default thread count than at one. So fit, fold-in and top-n limit BLAS
to one thread for the duration of the call (threadpoolctl, as implicit does) and restore the
caller's setting afterwards; numba's thread count is set per call the same way.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numba
import scipy.linalg  # noqa: F401 (loads scipy's own OpenBLAS now, see _controller)
from threadpoolctl import ThreadpoolController

_Function = TypeVar("_Function", bound=Callable[..., Any])


_cached_controller: tuple[int, ThreadpoolController] | None = None


def _controller() -> ThreadpoolController:
    """The loaded thread pools, inspected again only when new modules were imported.

    Inspecting the loaded libraries costs milliseconds, too much per request; a new BLAS
    (scipy.linalg brings its own OpenBLAS) only arrives with a new Python module. numba loads
    scipy.linalg while it loads compiled kernels, i.e. inside a limited call, after the
    controller was built: imported above, so it is there from the start.
    """
    global _cached_controller
    modules = len(sys.modules)
    if _cached_controller is None or _cached_controller[0] != modules:
        _cached_controller = (modules, ThreadpoolController())
    return _cached_controller[1]


def numba_threads(requested: int | None) -> int:
    """The numba thread count for ``num_threads``: None or 0 mean every core numba has."""
    available = numba.config.NUMBA_NUM_THREADS
    if not requested:
        return available
    return max(1, min(int(requested), available))


@contextlib.contextmanager
def engine_threads(num_threads: int | None = None) -> Iterator[None]:
    """BLAS at one thread and numba at ``num_threads`` inside the block, restored after."""
    previous_numba = numba.get_num_threads()
    numba.set_num_threads(numba_threads(num_threads))
    try:
        with _controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous_numba)


def single_blas_thread(method: _Function) -> _Function:
    """Run a model method inside :func:`engine_threads` with the model's ``num_threads``.

    Re-entrant: a call made from inside another one (recommend -> recommend_vectors) finds the
    limits already in place and only sets them again.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with engine_threads(getattr(self, "num_threads", None)):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
