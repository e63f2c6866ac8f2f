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
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from t2s_env.errors import DatasetError
from t2s_env.observation import DEFAULT_IMAGE_SIZE, load_framed, resize_image, resize_mask

_FIELDS = ("dataset", "root", "sample_id", "image", "mask", "image_size")


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
    def image_key(self) -> str:
        """Identifies the framed image: references with equal keys share one encoding."""
        where = self.image or f"{self.dataset}|{self.root}|{self.sample_id}"
        return f"{where}@{self.image_size}"

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
        ref = cls(**{k: value.get(k) for k in _FIELDS if k in value})
        if not (ref.image and ref.mask) and not (ref.dataset and ref.sample_id):
            raise DatasetError(
                f"ground-truth reference {ref.to_json()} names neither image+mask files nor dataset+sample_id"
            )
        if ref.image_size is not None and (not isinstance(ref.image_size, int) or ref.image_size <= 0):
            raise DatasetError(f"image_size {ref.image_size!r} in ground-truth reference must be a positive integer or null")
        return ref


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
    scoring service resolves references sent over the network).
    """

    def __init__(self, capacity: int = 64, allowed_roots: "list[str] | None" = None) -> None:
        self.capacity = max(1, int(capacity))
        self.allowed_roots = None if allowed_roots is None else [Path(r).resolve() for r in allowed_roots]
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._datasets: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _check_allowed(self, ref: GroundTruthRef) -> None:
        if self.allowed_roots is None:
            return
        paths = [p for p in (ref.root, ref.image, ref.mask) if p]
        if not paths and ref.dataset and not ref.dataset.startswith("synthetic"):
            raise DatasetError(f"reference {ref.to_json()} names no root; this server only reads under its --data-root")
        for p in paths:
            rp = Path(p).resolve()
            if not any(rp == a or a in rp.parents for a in self.allowed_roots):
                raise DatasetError(f"{p} is outside the server's --data-root folders; start `t2s serve` with --data-root covering it")

    def _by_dataset(self, ref: GroundTruthRef) -> tuple[np.ndarray, np.ndarray]:
        from t2s_env.datasets import make_dataset

        key = (str(ref.dataset), ref.root)
        index = self._datasets.get(key)
        if index is None:
            ds = make_dataset(str(ref.dataset), root=ref.root, question="all")
            index = {}
            for s in ds:
                index.setdefault(s.sample_id, s)
                index.setdefault(s.image_id, s)  # question-agnostic: the mask is per image
            self._datasets[key] = index
        sample = index.get(str(ref.sample_id))
        if sample is None:
            raise DatasetError(f"sample {ref.sample_id!r} is not in {ref.dataset} under {ref.root}; check the reference")
        framed = load_framed(sample, ref.image_size)
        return framed.image, framed.gt_mask

    def resolve(self, ref: Any) -> tuple[np.ndarray, np.ndarray, str]:
        """(image (S, S, 3) uint8, mask (S, S) bool, image key) for a reference."""
        ref = GroundTruthRef.from_any(ref)
        self._check_allowed(ref)
        key = ref.to_json()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[0], hit[1], ref.image_key
        pair = _read_files(ref) if ref.image and ref.mask else self._by_dataset(ref)
        with self._lock:
            self._cache[key] = pair
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return pair[0], pair[1], ref.image_key
