"""The bounded caches: what recurs stays, what does not is forgotten, memory is capped."""

import pytest

from crawler.recent import Interner, RecentMap, RecentSet


def test_map_keeps_at_most_twice_its_size():
    cache: RecentMap[int, str] = RecentMap(100)
    for n in range(10_000):
        cache[n] = str(n)
    assert len(cache) <= 200
    assert cache.get(9_999) == "9999"
    assert cache.get(0) is None


def test_an_entry_used_often_survives_a_long_tail():
    cache: RecentMap[str, int] = RecentMap(50)
    cache["provider"] = 1
    for n in range(5_000):  # a long tail of one-off names, the provider among them
        cache[f"tail{n}"] = n
        if n % 40 == 0:
            assert cache.get("provider") == 1
    assert cache.get("provider") == 1


def test_pop_forgets_in_both_generations():
    cache: RecentMap[str, int] = RecentMap(2)
    cache["a"] = 1
    cache["b"] = 2
    cache["c"] = 3  # "a" and "b" are now the old generation
    assert cache.pop("a") == 1
    assert cache.get("a") is None
    cache["b"] = 20  # set again while old: one entry, the new value
    assert cache.get("b") == 20
    assert len(cache) == 2
    assert cache.pop("missing", -1) == -1


def test_set_says_whether_a_key_is_new():
    seen: RecentSet[tuple[str, str]] = RecentSet(10)
    assert seen.add(("mx.example", "192.0.2.1"))
    assert not seen.add(("mx.example", "192.0.2.1"))
    assert ("mx.example", "192.0.2.1") in seen
    for n in range(100):
        seen.add(("tail", str(n)))
    assert ("mx.example", "192.0.2.1") not in seen  # forgotten: the caller writes it again
    assert len(seen) <= 20


def test_interner_gives_one_shared_copy():
    shared: Interner[tuple[str, ...]] = Interner(10)
    first = shared(("mx1.example", "mx2.example"))
    again = shared(tuple(["mx1.example", "mx2.example"]))
    assert again is first


def test_a_cache_needs_room():
    with pytest.raises(ValueError, match="at least one entry"):
        RecentMap(0)
