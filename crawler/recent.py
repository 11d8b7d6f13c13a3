"""Bounded memory for what a crawl remembers only to save work: recently used entries.

Why: a national list names ~10^6 domains and hundreds of thousands of MX hosts, IPs and
certificates. Caches that only save work (an MX host's addresses, "this row is already
written", one shared copy of equal values) must not grow with the list. A provider's
names recur all through a list sorted by name, so what matters is to keep what is used
often, not everything: two generations, each of at most `size` entries; an entry used
while in the old generation moves to the new one; when the new one is full, the old one
is dropped. Lookups cost a dict lookup or two, and memory holds at most twice `size` entries.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class RecentMap(Generic[K, V]):
    __slots__ = ("_new", "_old", "size")

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a cache needs room for at least one entry, not {size}")
        self.size = size
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._new.get(key, _MISSING)
        if value is _MISSING:
            value = self._old.pop(key, _MISSING)
            if value is _MISSING:
                return default
            self[key] = value  # used again: it stays
        return value  # type: ignore[return-value]

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self._new:
            self._old.pop(key, None)
            if len(self._new) >= self.size:
                self._old, self._new = self._new, {}
        self._new[key] = value

    def pop(self, key: K, default: V | None = None) -> V | None:
        value = self._new.pop(key, _MISSING)
        old = self._old.pop(key, _MISSING)
        if value is _MISSING:
            value = old
        return default if value is _MISSING else value  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


class RecentSet(Generic[K]):
    """Keys seen recently: `add` says whether the key is new to it."""

    __slots__ = ("_keys",)

    def __init__(self, size: int):
        self._keys: RecentMap[K, bool] = RecentMap(size)

    def add(self, key: K) -> bool:
        if self._keys.get(key):
            return False
        self._keys[key] = True
        return True

    def __contains__(self, key: K) -> bool:
        return bool(self._keys.get(key))

    def __len__(self) -> int:
        return len(self._keys)


class Interner(Generic[V]):
    """One shared copy of equal immutable values that recur (a provider's certificate
    names, a verdict's reasons on each of its IPs), for as long as they recur."""

    __slots__ = ("_values",)

    def __init__(self, size: int = 10_000):
        self._values: RecentMap[V, V] = RecentMap(size)

    def __call__(self, value: V) -> V:
        known = self._values.get(value)
        if known is None:
            self._values[value] = known = value
        return known
