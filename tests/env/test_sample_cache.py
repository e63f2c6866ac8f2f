"""FramedSampleCache: bounded by bytes and, optionally, by count; loads on a miss
(what both the env and a trainer's row cache need)."""

from __future__ import annotations

import numpy as np

from t2s_env.framing import FramedSample
from t2s_env.sample_cache import FramedSampleCache


def _framed(side: int = 8) -> FramedSample:
    return FramedSample(None, np.zeros((side, side, 3), np.uint8), np.zeros((side, side), bool), (side, side))


PER_SAMPLE = 8 * 8 * 3 + 8 * 8  # image + mask bytes of one 8² sample


def test_count_bound_evicts_the_least_recently_used():
    cache = FramedSampleCache(max_bytes=100 * PER_SAMPLE, max_items=2)
    a, b, c = _framed(), _framed(), _framed()
    cache.put(0, a)
    cache.put(1, b)
    assert cache.get(0) is a  # 0 is now the most recent
    cache.put(2, c)
    assert len(cache) == 2 and cache.get(1) is None and cache.get(0) is a and cache.get(2) is c
    assert cache.nbytes == 2 * PER_SAMPLE


def test_byte_bound_alone_as_before():
    cache = FramedSampleCache(max_bytes=2 * PER_SAMPLE)
    for i in range(5):
        cache.put(i, _framed())
    assert len(cache) == 2 and cache.max_items is None and cache.nbytes == 2 * PER_SAMPLE


def test_get_or_load_loads_each_index_once_while_cached():
    cache = FramedSampleCache(max_bytes=10 * PER_SAMPLE, max_items=2)
    loads = []

    def load(i):
        loads.append(i)
        return _framed()

    first = cache.get_or_load(3, lambda: load(3))
    assert cache.get_or_load(3, lambda: load(3)) is first and loads == [3]
    cache.get_or_load(4, lambda: load(4))
    cache.get_or_load(5, lambda: load(5))  # evicts 3
    cache.get_or_load(3, lambda: load(3))
    assert loads == [3, 4, 5, 3]
    # a sample larger than the byte bound is returned, not kept
    small = FramedSampleCache(max_bytes=PER_SAMPLE - 1)
    assert small.get_or_load(0, _framed).image.shape == (8, 8, 3) and len(small) == 0
