"""A segmenter wrapper that remembers image embeddings across calls.

:class:`~t2s_env.scoring.Scorer` encodes each image once *per call*. Trainers that score
one completion per call (verl's naive reward manager calls ``compute_score`` per sample),
and a service that forms batches from independent requests, would re-encode the same image
G times. Wrapping the segmenter in :class:`EncodeCache` keys each embedding by a digest of
the image's pixels (never by a name or path a caller supplies), so the encoder runs once per
distinct image while it stays in the LRU, and two images share an embedding only when
their pixels are equal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from t2s_env.segmenters import Segmenter

#: Default bound of the embeddings an EncodeCache keeps, in bytes.
DEFAULT_CACHE_BYTES = 1 << 30


def image_digest(image: np.ndarray) -> str:
    """A collision-resistant name of an array's pixels, shape and dtype (SHA-256: a client
    must not be able to craft two images that share an embedding)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(arr.data)
    return f"{h.hexdigest()}{arr.shape}{arr.dtype}"


def held_bytes(obj: Any) -> int:
    """Bytes held by the arrays and tensors inside ``obj`` (any segmenter's embedding:
    an array, a tensor, a tuple, a dataclass of tensors, ...); other values count 0."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):  # a torch tensor
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(v) for v in obj)
    if isinstance(obj, dict):
        return sum(held_bytes(v) for v in obj.values())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(held_bytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


class EncodeCache(Segmenter):
    """``inner`` with an LRU of at most ``capacity`` embeddings and ``max_bytes`` bytes;
    decode passes straight through."""

    def __init__(self, inner: Segmenter, capacity: int = 32, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.inner = inner
        self.capacity = max(1, int(capacity))
        self.max_bytes = max(0, int(max_bytes))
        self.name = inner.name
        self.device = inner.device
        self._lru: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def held(self) -> tuple[int, int]:
        """(embeddings, bytes) in the LRU now."""
        with self._lock:
            return len(self._lru), self._bytes

    def _remember(self, key: str, embedding: Any) -> None:
        size = held_bytes(embedding)
        if size > self.max_bytes:
            return  # one embedding over the bound would evict everything and stay alone
        self._lru[key] = (embedding, size)
        self._bytes += size
        while len(self._lru) > self.capacity or self._bytes > self.max_bytes:
            _, (_, old) = self._lru.popitem(last=False)
            self._bytes -= old

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        keys = [image_digest(im) for im in images]
        out: list[Any] = [None] * len(images)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, k in enumerate(keys):
                if k in self._lru:
                    self._lru.move_to_end(k)
                    out[i] = self._lru[k][0]
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
                    if k not in self._lru:
                        self._remember(k, emb)
        return out

    def decode(self, embedding: Any, prompt_sets: Sequence[Any]) -> Any:
        return self.inner.decode(embedding, prompt_sets)

    def decode_with_state(self, embedding: Any, prompt_sets: Sequence[Any], previous: Any = None) -> Any:
        # the inner segmenter's refinement (SAM2 mask_input, GrabCut re-seeding), not the base default
        return self.inner.decode_with_state(embedding, prompt_sets, previous)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()
