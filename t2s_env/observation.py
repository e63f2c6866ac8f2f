"""From a dataset sample to what an agent sees: the protocol frame and the observation.

The paper's frame (SPEC §5): every image is resized to a fixed 840×840 square with
LANCZOS, the mask with NEAREST; the LVLM, SAM2 and the IoU all work in that frame, so
prompts need no rescaling. ``image_size=None`` keeps the native resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .datasets.sample import Sample
from .instructions import DEFAULT_VARIANT, PromptVariant, build_messages

DEFAULT_IMAGE_SIZE = 840


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, LANCZOS (upstream's filter)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool, NEAREST."""
    if mask.shape == (size, size):
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.resize((size, size), Image.NEAREST)) > 0


@dataclass
class FramedSample:
    """A sample's image and mask in the protocol frame.

    image: (S, S, 3) uint8; gt_mask: (S, S) bool; original_size: (width, height) of the file.
    """

    sample: Sample
    image: np.ndarray
    gt_mask: np.ndarray
    original_size: tuple[int, int]

    @property
    def gt_empty(self) -> bool:
        return not bool(self.gt_mask.any())


def load_framed(sample: Sample, image_size: int | None = DEFAULT_IMAGE_SIZE) -> FramedSample:
    image, mask = sample.load()
    original = (image.shape[1], image.shape[0])
    if image_size is not None:
        image, mask = resize_image(image, image_size), resize_mask(mask, image_size)
    return FramedSample(sample, np.ascontiguousarray(image), mask, original)


def make_observation(
    framed: FramedSample,
    variant: str | PromptVariant = DEFAULT_VARIANT,
    privileged: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The env's observation and reset info for a framed sample.

    observation: ``{"image": (S, S, 3) uint8, "question": str}``.
    info: ``{"sample_id", "messages"}`` (+ ``"gt_mask"`` (S, S) bool when privileged).
    """
    obs = {"image": framed.image, "question": framed.sample.question}
    info: dict[str, Any] = {
        "sample_id": framed.sample.sample_id,
        "messages": build_messages(framed.sample.question, variant),
    }
    if privileged:
        info["gt_mask"] = framed.gt_mask
    return obs, info
