"""A least-recently-used mapping with a budget, for caches a hostile input could grow.

Each entry costs what ``cost(value)`` says (bytes, or 1 to bound a count); the
least recently used entries are dropped until the total fits the budget. A
value that alone costs more than the budget is not kept at all: its user
already holds it, and keeping it would evict everything else.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """``cache[key] = value`` and ``cache.get(key)``; at most ``budget`` in total cost."""

    def __init__(self, budget: int, cost: Callable[[V], int]) -> None:
        self.budget = budget
        self._cost = cost
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        #: the summed cost of the entries held
        self.total = 0
        #: entries dropped to stay within the budget, since creation
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def __setitem__(self, key: K, value: V) -> None:
        self.pop(key)
        cost = max(0, self._cost(value))
        if cost > self.budget:
            return
        self._entries[key] = (value, cost)
        self.total += cost
        while self.total > self.budget:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.total -= dropped
            self.evictions += 1

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or None."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self.total -= entry[1]
        return entry[0]

    def clear(self) -> None:
        self._entries.clear()
        self.total = 0
