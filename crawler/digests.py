"""A set of 64-bit domain digests in 8-byte slots: the list's dedup at 16-32 bytes a domain.

Why: every domain of a list is remembered for the whole crawl (a duplicate line must
be told from a new domain, and a resumed run skips the domains it answered). A Python
set of them costs ~70 bytes a domain (a bytes or int object and a hash-table slot):
70 MB of a 10^6-domain crawl's memory. Here the digests sit in one array, open
addressing with linear probing, between a quarter and half full: 16 to 32 bytes a domain, 16 MB at
10^6. The digests (blake2b, see `domainlist.domain_hash`) are uniform, so their low
bits index the table directly.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

_EMPTY = 0  # a slot no digest took; the digest 0 is stored as 1 (one chance in 2^63)


class DigestSet:
    __slots__ = ("_len", "_mask", "_slots")

    def __init__(self, digests: Iterable[int] = ()):
        self._slots = array("Q", [_EMPTY]) * 1024
        self._mask = len(self._slots) - 1
        self._len = 0
        for digest in digests:
            self.add(digest)

    def add(self, digest: int) -> bool:
        """Add a digest; False when it was there already."""
        i, found = self._slot(digest)
        if found:
            return False
        self._slots[i] = digest or 1
        self._len += 1
        if 2 * self._len > len(self._slots):
            self._grow()
        return True

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, int) and self._slot(digest)[1]

    def _slot(self, digest: int) -> tuple[int, bool]:
        """The digest's slot and True, or the empty slot where it would go and False."""
        digest = digest or 1
        slots, mask = self._slots, self._mask
        i = digest & mask
        while (taken := slots[i]) != _EMPTY:
            if taken == digest:
                return i, True
            i = (i + 1) & mask
        return i, False

    def __len__(self) -> int:
        return self._len

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", [_EMPTY]) * (2 * len(old))
        self._mask = len(self._slots) - 1
        self._len = 0
        for digest in old:
            if digest != _EMPTY:
                self.add(digest)
