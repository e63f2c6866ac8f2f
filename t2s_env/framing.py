"""Framing: the view frame the agent sees, and the scoring frame the IoU is computed in.

The view frame (SPEC §5): every image is resized to a fixed 840×840 square with LANCZOS,
the mask with NEAREST; the LVLM, SAM2 and the IoU all work in that frame, so prompts need
no rescaling. ``image_size=None`` keeps the native resolution. A :class:`FramedSample` is
a sample in the view frame.

A metric protocol (``t2s_env.protocol.MetricProtocol``) fixes three things about
resolution:

- ``image_size`` and ``resize``: the view frame. ``square`` stretches the image to
  ``S×S`` (the paper's 840 frame); ``pad`` scales the long side to ``S`` (aspect kept) and
  pads bottom and right with black / background to ``S×S`` (SegEarth-R1's 1024 frame).
- ``iou_frame``: ``agent`` segments and scores in the view frame; ``original`` maps the
  agent's prompts back to the image's own pixel grid, segments the original image and
  computes IoU at the original size (what LISA-style native evaluation does).
  :class:`ScoringFrames` holds both frames of one sample.

Prompts use continuous pixel coordinates with the origin at the top-left corner of the
top-left pixel (see ``t2s_env.prompt``), so mapping a square frame of side ``S`` back to a
``W×H`` image is ``x·W/S, y·H/S`` exactly. The *units* an answer writes its coordinates in
(pixels, 0–1000, 0–1) are another matter: :mod:`t2s_env.coords`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .datasets.sample import Sample
from .prompt import GeometricPrompt

DEFAULT_IMAGE_SIZE = 840
#: Largest view frame side: a 4096² frame is already 50 MB per image and its mask.
MAX_IMAGE_SIZE = 4096
RESIZES = ("square", "pad")
IOU_FRAMES = ("agent", "original")


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


def pad_frame(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The padded view frame: long side to ``size`` (LANCZOS image, NEAREST mask), then pad
    bottom/right to a ``size×size`` square (black pixels, background mask)."""
    h, w = mask.shape
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.LANCZOS))
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)) > 0
    out_image = np.zeros((size, size, 3), np.uint8)
    out_mask = np.zeros((size, size), bool)
    out_image[:nh, :nw] = image
    out_mask[:nh, :nw] = mask
    return out_image, out_mask


@dataclass
class FramedSample:
    """A sample's image and mask in the view frame.

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
    """A sample in the square view frame of side ``image_size`` (None: native size)."""
    image, mask = sample.load()
    original = (image.shape[1], image.shape[0])
    if image_size is not None:
        image, mask = resize_image(image, image_size), resize_mask(mask, image_size)
    return FramedSample(sample, np.ascontiguousarray(image), mask, original)


@dataclass
class ScoringFrames:
    """One sample under a protocol: its view frame and its scoring frame.

    ``framed``: the agent's view (image and GT in the view frame). ``image`` and
    ``gt_mask``: what the segmenter and the IoU use (the scoring frame). ``scale``: (sx, sy)
    from view-frame coordinates to scoring-frame coordinates, None when both frames are
    the same.
    """

    framed: FramedSample
    image: np.ndarray
    gt_mask: np.ndarray
    scale: tuple[float, float] | None = None


def load_scoring_frames(sample: Any, image_size: int, resize: str = "square", iou_frame: str = "agent") -> ScoringFrames:
    """Load a sample once and build the view frame and the scoring frame."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    if iou_frame not in IOU_FRAMES:
        raise ValueError(f"iou_frame must be one of {IOU_FRAMES}, got {iou_frame!r}")
    image, mask = sample.load()
    h, w = mask.shape
    if resize == "square":
        agent_image, agent_mask = resize_image(image, image_size), resize_mask(mask, image_size)
    else:
        agent_image, agent_mask = pad_frame(image, mask, image_size)
    framed = FramedSample(sample, np.ascontiguousarray(agent_image), agent_mask, (w, h))
    if iou_frame == "agent":
        return ScoringFrames(framed, framed.image, framed.gt_mask, None)
    if resize == "square":
        scale = (w / image_size, h / image_size)
    else:  # the padded frame keeps the aspect: one factor, origin unchanged
        f = max(h, w) / image_size
        scale = (f, f)
    return ScoringFrames(framed, np.ascontiguousarray(image), mask, scale)


def map_prompt(prompt: GeometricPrompt, sx: float, sy: float) -> GeometricPrompt:
    """A prompt from the view frame to the scoring frame (per-axis scaling)."""
    box = None if prompt.box is None else (prompt.box[0] * sx, prompt.box[1] * sy, prompt.box[2] * sx, prompt.box[3] * sy)
    return GeometricPrompt(
        box=box,
        positive_points=tuple((x * sx, y * sy) for x, y in prompt.positive_points),
        negative_points=tuple((x * sx, y * sy) for x, y in prompt.negative_points),
    )


def map_answer(answer: Any, scale: tuple[float, float] | None) -> Any:
    """A parsed answer (``t2s_env.parser.ParsedAnswer``) with its prompts mapped to the
    scoring frame; the flags (parsed, think format, error) are those of the view-frame parse."""
    if scale is None or not answer.prompts:
        return answer
    return replace(answer, prompts=tuple(map_prompt(p, *scale) for p in answer.prompts))


def map_prompts(prompts: Sequence[GeometricPrompt], scale: tuple[float, float] | None) -> list[GeometricPrompt]:
    """Prompts from the view frame to the scoring frame (``scale`` of :class:`ScoringFrames`)."""
    if scale is None:
        return list(prompts)
    return [map_prompt(p, *scale) for p in prompts]


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "FramedSample",
    "IOU_FRAMES",
    "MAX_IMAGE_SIZE",
    "RESIZES",
    "ScoringFrames",
    "load_framed",
    "load_scoring_frames",
    "map_answer",
    "map_prompt",
    "map_prompts",
    "pad_frame",
    "resize_image",
    "resize_mask",
]
