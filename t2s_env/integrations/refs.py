"""Ground-truth references: how a trainer row names its image and mask without pixels.

verl and EasyR1 pass a reward function the completion text and the row's ``ground_truth``,
never the image. ``t2s data export`` therefore writes a *reference*: a JSON string such as

    {"dataset": "earthreason:train", "root": "/data/EarthReason", "sample_id": "img_001",
     "image": "/data/EarthReason/train/images/img_001.jpg",
     "mask": "/data/EarthReason/train/labels/img_001.png", "image_size": 840}

With ``image`` and ``mask`` paths the files are read directly (no dataset indexing); a
dataset whose masks are not files (COCO annotations) is resolved through ``dataset``,
``root`` and ``sample_id``. ``image_size`` is the protocol frame (840 = the paper's
square; null = native resolution). Resolved (image, mask) pairs are kept in a small LRU
cache, because a GRPO group asks for the same reference G times.

What a reference *says* never identifies pixels: two references share an encoding or a
merged group only through :class:`ResolvedRef`'s digests of the pixels they resolved to (a
reference may name any ``image`` path beside a ``dataset`` + ``sample_id`` whose pixels it
actually gets).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from t2s_env.datasets.sample import image_size as header_size
from t2s_env.errors import DatasetError
from t2s_env.integrations.cache import image_digest
from t2s_env.framing import DEFAULT_IMAGE_SIZE, load_framed, resize_image, resize_mask

_FIELDS = ("dataset", "root", "sample_id", "image", "mask", "image_size")
_TEXT_FIELDS = ("dataset", "root", "sample_id", "image", "mask")
#: Default bound of the resolved pairs a RefResolver keeps, in bytes.
DEFAULT_REF_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class GroundTruthRef:
    """Where one sample's image and mask live, and the frame it is scored in."""

    dataset: str | None = None
    root: str | None = None
    sample_id: str | None = None
    image: str | None = None
    mask: str | None = None
    image_size: int | None = DEFAULT_IMAGE_SIZE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def reads_files(self) -> bool:
        """True: pixels come from the ``image`` and ``mask`` files; False: from the dataset."""
        return bool(self.image and self.mask)

    @property
    def source_key(self) -> str:
        """The fields that decide the pixels (and nothing else): references with equal source
        keys resolve to equal pixels, so this keys the resolver's cache."""
        if self.reads_files:
            return json.dumps(["files", self.image, self.mask, self.image_size])
        return json.dumps(["dataset", self.dataset, self.root, self.sample_id, self.image_size])

    @classmethod
    def from_any(cls, value: Any) -> "GroundTruthRef":
        """From the JSON string (verl's ``reward_model.ground_truth``), a dict, or itself."""
        if isinstance(value, GroundTruthRef):
            return value
        if isinstance(value, (bytes, str)):
            try:
                value = json.loads(value)
            except ValueError:
                raise DatasetError(
                    f"ground truth {str(value)[:80]!r} is not a Think2Seg reference (JSON); "
                    "write the rows with `t2s data export verl`"
                ) from None
        if not isinstance(value, Mapping):
            raise DatasetError(
                f"ground truth of type {type(value).__name__} is not a Think2Seg reference; "
                "write the rows with `t2s data export verl`"
            )
        unknown = set(value) - set(_FIELDS)
        if unknown:
            raise DatasetError(f"unknown field(s) {sorted(unknown)} in ground-truth reference; valid: {', '.join(_FIELDS)}")
        for name in _TEXT_FIELDS:
            if value.get(name) is not None and not isinstance(value[name], str):
                raise DatasetError(
                    f"{name} in ground-truth reference must be a string or null, got {type(value[name]).__name__}"
                )
        size = value.get("image_size", DEFAULT_IMAGE_SIZE)
        # bool is an int in Python: `true` must not pass as a frame of 1 pixel
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise DatasetError(f"image_size {size!r} in ground-truth reference must be a positive integer or null")
        ref = cls(**{k: value.get(k) for k in _FIELDS if k in value})
        if not ref.reads_files and not (ref.dataset and ref.sample_id):
            raise DatasetError(
                f"ground-truth reference {ref.to_json()} names neither image+mask files nor dataset+sample_id"
            )
        return ref


@dataclass(frozen=True)
class ResolvedRef:
    """A reference's framed pixels and the digests that identify them, computed once when
    the pair is read (equal keys: equal pixels)."""

    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) bool
    image_key: str
    mask_key: str

    @classmethod
    def of(cls, image: np.ndarray, mask: np.ndarray) -> "ResolvedRef":
        return cls(image, mask, image_digest(image), image_digest(mask))

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + self.mask.nbytes)


def _read_files(ref: GroundTruthRef) -> tuple[np.ndarray, np.ndarray]:
    from t2s_env.datasets import read_binary_mask, read_rgb

    for kind, path in (("image", ref.image), ("mask", ref.mask)):
        if not Path(path).is_file():  # type: ignore[arg-type]
            raise DatasetError(
                f"{kind} file {path} named by the ground-truth reference of sample {ref.sample_id!r} does not exist; "
                "mount the dataset at the exported path or re-run `t2s data export`"
            )
    image, mask = read_rgb(Path(ref.image)), read_binary_mask(Path(ref.mask))  # type: ignore[arg-type]
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"image {ref.image} is {image.shape[1]}x{image.shape[0]} but its mask {ref.mask} is "
            f"{mask.shape[1]}x{mask.shape[0]}; they must match"
        )
    if ref.image_size is not None:
        image, mask = resize_image(image, ref.image_size), resize_mask(mask, ref.image_size)
    return np.ascontiguousarray(image), mask


class RefResolver:
    """Resolves references to framed (image, mask) pairs, with LRU caches.

    ``allowed_roots``: when given, references outside these folders are refused (the
    scoring service resolves references sent over the network). The cache of resolved
    pairs holds at most ``capacity`` pairs and ``max_bytes`` bytes; at most
    ``max_datasets`` dataset indexes are kept.
    """

    def __init__(self, capacity: int = 64, allowed_roots: "list[str] | None" = None,
                 max_bytes: int = DEFAULT_REF_CACHE_BYTES, max_datasets: int = 8) -> None:
        self.capacity = max(1, int(capacity))
        self.max_bytes = max(0, int(max_bytes))
        self.max_datasets = max(1, int(max_datasets))
        self.allowed_roots = None if allowed_roots is None else [Path(r).resolve() for r in allowed_roots]
        self._cache: OrderedDict[str, ResolvedRef] = OrderedDict()
        self._bytes = 0
        self._datasets: OrderedDict[tuple[str, str | None], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def held(self) -> tuple[int, int]:
        """(pairs, bytes) in the cache now."""
        with self._lock:
            return len(self._cache), self._bytes

    def _check_path(self, path: str | Path) -> None:
        rp = Path(path).resolve()
        if self.allowed_roots is not None and not any(rp == a or a in rp.parents for a in self.allowed_roots):
            raise DatasetError(f"{path} is outside the server's --data-root folders; start `t2s serve` with --data-root covering it")

    def _check_allowed(self, ref: GroundTruthRef) -> None:
        if self.allowed_roots is None:
            return
        paths = [p for p in (ref.root, ref.image, ref.mask) if p]
        if not paths and ref.dataset and not ref.dataset.startswith("synthetic"):
            raise DatasetError(f"reference {ref.to_json()} names no root; this server only reads under its --data-root")
        for p in paths:
            self._check_path(p)

    def _sample(self, ref: GroundTruthRef) -> Any:
        from t2s_env.datasets import make_dataset

        key = (str(ref.dataset), ref.root)
        with self._lock:
            index = self._datasets.get(key)
            if index is not None:
                self._datasets.move_to_end(key)
        if index is None:
            ds = make_dataset(str(ref.dataset), root=ref.root, question="all")
            index = {}
            for s in ds:
                index.setdefault(s.sample_id, s)
                index.setdefault(s.image_id, s)  # question-agnostic: the mask is per image
            with self._lock:
                self._datasets[key] = index
                while len(self._datasets) > self.max_datasets:
                    self._datasets.popitem(last=False)
        sample = index.get(str(ref.sample_id))
        if sample is None:
            raise DatasetError(f"sample {ref.sample_id!r} is not in {ref.dataset} under {ref.root}; check the reference")
        if ref.root is not None:
            # a split such as "../x" would lead out of the root: the files themselves must lie under it
            self._check_path(sample.image_path)
        return sample

    def frame_shape(self, ref: Any) -> tuple[int, int]:
        """(height, width) the reference resolves to, read from at most a file header: what a
        server checks against its limits before any pixel is decoded."""
        ref = GroundTruthRef.from_any(ref)
        self._check_allowed(ref)
        if ref.image_size is not None:
            return ref.image_size, ref.image_size
        with self._lock:
            hit = self._cache.get(ref.source_key)
        if hit is not None:
            return tuple(hit.mask.shape)  # type: ignore[return-value]
        if ref.reads_files:
            w, h = header_size(Path(ref.image))  # type: ignore[arg-type]
            return h, w
        sample = self._sample(ref)
        w, h = sample.size if sample.size is not None else header_size(sample.image_path)
        return h, w

    def lookup(self, ref: Any) -> ResolvedRef:
        """The reference's pixels and digests, from the cache or read now, *without* adding
        them to the cache (a server adds them with :meth:`remember` once the whole request
        is accepted)."""
        ref = GroundTruthRef.from_any(ref)
        self._check_allowed(ref)
        key = ref.source_key
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        if ref.reads_files:
            image, mask = _read_files(ref)
        else:
            framed = load_framed(self._sample(ref), ref.image_size)
            image, mask = framed.image, framed.gt_mask
        return ResolvedRef.of(image, mask)

    def remember(self, ref: Any, resolved: ResolvedRef) -> None:
        """Keep ``resolved`` as the pixels of ``ref`` (LRU, bounded by pairs and bytes)."""
        key = GroundTruthRef.from_any(ref).source_key
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return
            if resolved.nbytes > self.max_bytes:
                return
            self._cache[key] = resolved
            self._bytes += resolved.nbytes
            while len(self._cache) > self.capacity or self._bytes > self.max_bytes:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes

    def resolve(self, ref: Any) -> ResolvedRef:
        """The reference's framed pixels and their digests, cached."""
        resolved = self.lookup(ref)
        self.remember(ref, resolved)
        return resolved
