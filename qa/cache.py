"""A small thread-safe LRU cache for batch computations (question vectors, parsed passages)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Least-recently-used cache; safe to share between threads answering questions at once."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get_or_compute(self, keys: Sequence[K], compute: Callable[[list[K]], Sequence[V]]) -> list[V]:
        """Values for ``keys``; the missing ones are computed in one batch call, outside the lock."""
        unique = list(dict.fromkeys(keys))
        with self._lock:
            found = {k: self._data[k] for k in unique if k in self._data}
        missing = [k for k in unique if k not in found]
        if missing:
            found.update(zip(missing, compute(missing), strict=True))
        with self._lock:
            for k in unique:
                self._data[k] = found[k]
                self._data.move_to_end(k)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return [found[k] for k in keys]
