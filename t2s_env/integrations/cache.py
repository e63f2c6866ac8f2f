"""A segmenter wrapper that remembers image embeddings across calls.

:class:`~t2s_env.scoring.Scorer` encodes each image once *per call*. Trainers that score
one completion per call (verl's naive reward manager calls ``compute_score`` per sample),
and a service that forms batches from independent requests, would re-encode the same image
G times. Wrapping the segmenter in :class:`EncodeCache` keys each embedding by the image's
bytes, so the encoder runs once per distinct image while it stays in the LRU.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from t2s_env.segmenters import Segmenter


def image_digest(image: np.ndarray) -> str:
    arr = np.ascontiguousarray(image)
    return hashlib.sha1(arr.data).hexdigest() + str(arr.shape) + str(arr.dtype)


class EncodeCache(Segmenter):
    """``inner`` with an LRU of ``capacity`` embeddings; decode passes straight through."""

    def __init__(self, inner: Segmenter, capacity: int = 32) -> None:
        self.inner = inner
        self.capacity = max(1, int(capacity))
        self.name = inner.name
        self.device = inner.device
        self._lru: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        keys = [image_digest(im) for im in images]
        out: list[Any] = [None] * len(images)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, k in enumerate(keys):
                if k in self._lru:
                    self._lru.move_to_end(k)
                    out[i] = self._lru[k]
                    self.hits += 1
                else:
                    todo.setdefault(k, []).append(i)
        if todo:
            firsts = [idx[0] for idx in todo.values()]
            embeddings = self.inner.encode_batch([images[i] for i in firsts])
            with self._lock:
                for (k, idx), emb in zip(todo.items(), embeddings):
                    self.misses += 1
                    for i in idx:
                        out[i] = emb
                    self._lru[k] = emb
                    while len(self._lru) > self.capacity:
                        self._lru.popitem(last=False)
        return out

    def decode(self, embedding: Any, prompt_sets: Sequence[Any]) -> Any:
        return self.inner.decode(embedding, prompt_sets)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()
