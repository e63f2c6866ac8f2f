"""`Sample`: one (image, question, mask) triple, loaded lazily from disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import DatasetError


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}; replace or remove the file") from None


def read_binary_mask(path: Path) -> np.ndarray:
    """A single-channel mask file as (H, W) bool, foreground = pixel > 0 (channel 0 if RGB)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read mask {path}: {exc}; replace or remove the file") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr > 0


@dataclass(frozen=True)
class Sample:
    """One scored question about one image.

    ``sample_id`` is unique within a dataset split: the image id, or ``<image_id>#q<k>``
    when every question of an image is a sample. ``mask_ref`` is whatever the dataset's
    ``mask_reader`` needs (a path for EarthReason; an annotation for COCO-style data).
    """

    sample_id: str
    image_id: str
    question: str
    image_path: Path
    mask_ref: Any
    questions: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    question_index: int = 0
    size: tuple[int, int] | None = None  # (width, height), when known without decoding
    mask_reader: Callable[[Any], np.ndarray] = field(default=read_binary_mask, repr=False, compare=False)
    image_reader: Callable[[Path], np.ndarray] = field(default=read_rgb, repr=False, compare=False)

    def load_image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB at the file's own resolution."""
        return self.image_reader(self.image_path)

    def load_mask(self) -> np.ndarray:
        """(H, W) bool at the file's own resolution."""
        return self.mask_reader(self.mask_ref)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask, checked to have the same size."""
        image, mask = self.load_image(), self.load_mask()
        if image.shape[:2] != mask.shape:
            raise DatasetError(
                f"image {self.image_path} is {image.shape[1]}x{image.shape[0]} but its mask "
                f"{self.mask_ref} is {mask.shape[1]}x{mask.shape[0]}; they must match"
            )
        return image, mask
