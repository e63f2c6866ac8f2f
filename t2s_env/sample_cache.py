"""A bounded cache of framed samples (a sample's image and mask in the view frame).

A reset spent ~75% of its time decoding and resizing to the view frame; one-step episodes
revisit the same images, so the framed arrays are kept (never handed out themselves: the
env copies what it returns).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Callable

from .framing import FramedSample


class FramedSampleCache:
    """Framed samples by dataset index, least recently used evicted beyond ``max_bytes``
    (image + mask bytes) or beyond ``max_items`` samples (None: no count bound)."""

    def __init__(self, max_bytes: int, max_items: int | None = None) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.max_items = None if max_items is None else max(1, int(max_items))
        self.nbytes = 0
        self._items: OrderedDict[int, FramedSample] = OrderedDict()

    def get(self, index: int) -> FramedSample | None:
        framed = self._items.get(index)
        if framed is not None:
            self._items.move_to_end(index)
        return framed

    def put(self, index: int, framed: FramedSample) -> None:
        size = framed.image.nbytes + framed.gt_mask.nbytes
        if size > self.max_bytes:
            return
        self._items[index] = framed
        self.nbytes += size
        while self.nbytes > self.max_bytes or (self.max_items is not None and len(self._items) > self.max_items):
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.image.nbytes + old.gt_mask.nbytes

    def get_or_load(self, index: int, load: Callable[[], FramedSample]) -> FramedSample:
        """The cached sample of ``index``, or ``load()`` kept (when it fits) and returned."""
        framed = self.get(index)
        if framed is None:
            framed = load()
            self.put(index, framed)
        return framed

    def __len__(self) -> int:
        return len(self._items)


#: Caches shared by the envs of one process that frame the same data the same way (the sub-envs
#: of a sync vector env): each image is then decoded once, not once per sub-env. Held weakly,
#: so a cache goes with its last env.
_SHARED_CACHES: "weakref.WeakValueDictionary[tuple, FramedSampleCache]" = weakref.WeakValueDictionary()


def shared_frame_cache(key: tuple, max_bytes: int) -> FramedSampleCache:
    """The process's :class:`FramedSampleCache` for ``key`` (which includes the bound), made on first use."""
    key = (*key, int(max_bytes))
    cache = _SHARED_CACHES.get(key)
    if cache is None:
        cache = FramedSampleCache(max_bytes)
        _SHARED_CACHES[key] = cache
    return cache


__all__ = ["FramedSampleCache", "shared_frame_cache"]
