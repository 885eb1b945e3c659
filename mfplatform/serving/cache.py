"""One cache per process for what serving keeps between requests (a version's item-side data,
the version row, a tenant's last active version), bounded in bytes and evicting the least
recently used entry.

Every value is charged the bytes its loader reports (numpy arrays by `nbytes`), so the
process's memory for models stays within SERVING_CACHE_BYTES whatever the number of tenants.
An entry larger than the whole budget is served to the request that loaded it but not kept.
A key is loaded once however many threads ask for it at the same time: the others wait for
that load (per key, so a large tenant's load does not hold up a small tenant's).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings

from mfplatform.serving import metrics

Loader = Callable[[], tuple[Any, int]]  # () -> (value, its size in bytes)


class ByteLRU:
    """A least-recently-used mapping whose values' sizes add up to at most `max_bytes`.
    Keys are (kind, ...) tuples; the kind labels the metrics."""

    def __init__(self, max_bytes: int | None = None):
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._kind_bytes: dict[str, int] = {}
        self._kind_entries: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    @property
    def max_bytes(self) -> int:
        """The budget: given, or SERVING_CACHE_BYTES (read when used, so a test may set it)."""
        return int(settings.SERVING_CACHE_BYTES if self._max_bytes is None
                   else self._max_bytes)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def ordered_keys(self) -> list[Hashable]:
        """Least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value (and it becomes the most recently used), or `default`; no load."""
        with self._lock:
            return self._hit(key, default)

    def get_or_load(self, key: Hashable, loader: Loader) -> Any:
        with self._lock:
            value = self._hit(key, _MISSING)
            if value is not _MISSING:
                return value
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per key; later threads find its result
            try:
                with self._lock:
                    value = self._hit(key, _MISSING)
                if value is not _MISSING:
                    return value
                metrics.CACHE_MISSES.labels(_kind(key)).inc()
                value, size = loader()
                self.put(key, value, size, counted=True)
                return value
            finally:
                with self._lock:
                    self._loading.pop(key, None)

    def put(self, key: Hashable, value: Any, size: int, counted: bool = False) -> bool:
        """Keep `value` as the most recently used, evicting the least recently used entries
        until the budget holds; False (and nothing kept) when it alone exceeds the budget."""
        size = int(size)
        with self._lock:
            self._discard(key)
            budget = self.max_bytes
            if size > budget:
                metrics.CACHE_OVERSIZE.labels(_kind(key)).inc()
                self._report()
                return False
            while self._entries and self._bytes + size > budget:
                evicted, (_value, evicted_size) = self._entries.popitem(last=False)
                self._account(evicted, -evicted_size, -1)
                metrics.CACHE_EVICTIONS.labels(_kind(evicted)).inc()
            self._entries[key] = (value, size)
            self._account(key, size, 1)
            self._report()
            return True

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._discard(key)
            self._report()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._kind_bytes = dict.fromkeys(self._kind_bytes, 0)
            self._kind_entries = dict.fromkeys(self._kind_entries, 0)
            self._report()

    def _hit(self, key: Hashable, default: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return default
        self._entries.move_to_end(key)
        metrics.CACHE_HITS.labels(_kind(key)).inc()
        return entry[0]

    def _discard(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._account(key, -entry[1], -1)

    def _account(self, key: Hashable, size: int, entries: int) -> None:
        kind = _kind(key)
        self._bytes += size
        self._kind_bytes[kind] = self._kind_bytes.get(kind, 0) + size
        self._kind_entries[kind] = self._kind_entries.get(kind, 0) + entries

    def _report(self) -> None:
        if self is not CACHE:  # a cache made for a test or a measurement: not the process's
            return
        for kind, size in self._kind_bytes.items():
            metrics.CACHE_BYTES.labels(kind).set(size)
            metrics.CACHE_ENTRIES.labels(kind).set(self._kind_entries[kind])


_MISSING = object()


def _kind(key: Hashable) -> str:
    return str(key[0]) if isinstance(key, tuple) and key else "other"


CACHE = ByteLRU()  # the process's cache, within SERVING_CACHE_BYTES


def serving_cache() -> ByteLRU:
    return CACHE
