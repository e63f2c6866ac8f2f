"""The frames of a metric protocol: what the agent sees, and where IoU is computed.

A protocol (``t2s_env.metrics.MetricProtocol``) fixes three things about resolution:

- ``image_size`` and ``resize``: the agent's frame. ``square`` stretches the image to
  ``S×S`` (the paper's 840 frame: LANCZOS image, NEAREST mask); ``pad`` scales the long
  side to ``S`` (aspect kept) and pads bottom and right with black / background to ``S×S``
  (SegEarth-R1's 1024 frame).
- ``iou_frame``: ``agent`` segments and scores in that same frame; ``original`` maps the
  agent's prompts back to the image's own pixel grid, segments the original image and
  computes IoU at the original size (what LISA-style native evaluation does).

Prompts use continuous pixel coordinates with the origin at the top-left corner of the
top-left pixel (see ``t2s_env.prompt``), so mapping a square frame of side ``S`` back to a
``W×H`` image is ``x·W/S, y·H/S`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .observation import FramedSample, resize_image, resize_mask
from .prompt import GeometricPrompt

RESIZES = ("square", "pad")
IOU_FRAMES = ("agent", "original")


def pad_frame(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Long side to ``size`` (LANCZOS image, NEAREST mask), then pad bottom/right to a
    ``size×size`` square (black pixels, background mask)."""
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
class Frames:
    """One sample under a protocol.

    ``framed``: the agent's view (image and GT in the agent frame). ``image`` and
    ``gt_mask``: what the segmenter and the IoU use. ``scale``: (sx, sy) from agent-frame
    coordinates to scoring-frame coordinates, None when both frames are the same.
    """

    framed: FramedSample
    image: np.ndarray
    gt_mask: np.ndarray
    scale: tuple[float, float] | None = None


def load_frames(sample: Any, image_size: int, resize: str = "square", iou_frame: str = "agent") -> Frames:
    """Load a sample once and build the agent's frame and the scoring frame."""
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
        return Frames(framed, framed.image, framed.gt_mask, None)
    if resize == "square":
        scale = (w / image_size, h / image_size)
    else:  # the padded frame keeps the aspect: one factor, origin unchanged
        f = max(h, w) / image_size
        scale = (f, f)
    return Frames(framed, np.ascontiguousarray(image), mask, scale)


def map_prompt(prompt: GeometricPrompt, sx: float, sy: float) -> GeometricPrompt:
    """A prompt from the agent frame to the scoring frame (per-axis scaling)."""
    box = None if prompt.box is None else (prompt.box[0] * sx, prompt.box[1] * sy, prompt.box[2] * sx, prompt.box[3] * sy)
    return GeometricPrompt(
        box=box,
        positive_points=tuple((x * sx, y * sy) for x, y in prompt.positive_points),
        negative_points=tuple((x * sx, y * sy) for x, y in prompt.negative_points),
    )


def map_answer(answer: Any, scale: tuple[float, float] | None) -> Any:
    """A parsed answer (``t2s_env.parser.ParsedAnswer``) with its prompts mapped; the
    flags (parsed, think format, error) are those of the agent-frame parse."""
    if scale is None or not answer.prompts:
        return answer
    return replace(answer, prompts=tuple(map_prompt(p, *scale) for p in answer.prompts))


def map_prompts(prompts: Sequence[GeometricPrompt], scale: tuple[float, float] | None) -> list[GeometricPrompt]:
    if scale is None:
        return list(prompts)
    return [map_prompt(p, *scale) for p in prompts]


__all__ = ["Frames", "load_frames", "map_answer", "map_prompt", "map_prompts", "pad_frame"]
