"""Coordinate frames of an answer: in which units an LVLM writes its boxes and points.

Models answer in different units, and mixing them up silently zeroes the reward:

- ``abs``: pixels of the image the model saw (the observed frame). Qwen2.5-VL, and
  Think2Seg-RS's protocol (SPEC §3). The default.
- ``rel1000``: 0–1000 on both axes, whatever the image size (Qwen3-VL, InternVL).
- ``rel1``: 0–1 on both axes (LLaVA-1.5's grounding data writes boxes as fractions).

The parser reads an answer in its frame and converts it to pixels of the observed frame
(:func:`to_pixels`), so segmenters, IoU and reward never see anything but pixels.
A frame-relative coordinate ``c`` on an axis of ``n`` pixels is ``c · n / extent`` pixels:
(0, 0) is the top-left corner of the image and (extent, extent) its bottom-right corner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import ConfigError
from .prompt import GeometricPrompt


@dataclass(frozen=True)
class CoordFrame:
    """One answer frame. ``extent`` is the coordinate of the image's far edge on both
    axes (None: pixels of the observed image)."""

    name: str
    extent: float | None
    description: str
    #: decimals written in prompt examples and canonical answers of this frame
    decimals: int = 0

    @property
    def is_pixels(self) -> bool:
        return self.extent is None


COORD_FRAMES: dict[str, CoordFrame] = {
    f.name: f
    for f in (
        CoordFrame("abs", None, "pixels of the observed image"),
        CoordFrame("rel1000", 1000.0, "0-1000 on both axes"),
        CoordFrame("rel1", 1.0, "0-1 on both axes", decimals=3),
    )
}
DEFAULT_COORD_FRAME = "abs"


def get_coord_frame(frame: "str | CoordFrame") -> CoordFrame:
    if isinstance(frame, CoordFrame):
        return frame
    try:
        return COORD_FRAMES[frame]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown coord_frame {frame!r}; choose one of: {', '.join(COORD_FRAMES)}") from None


def frame_scale(frame: "str | CoordFrame", width: float, height: float) -> tuple[float, float] | None:
    """(sx, sy) from frame units to pixels of a ``width``×``height`` image; None for pixels."""
    f = get_coord_frame(frame)
    if f.extent is None:
        return None
    return float(width) / f.extent, float(height) / f.extent


def to_pixels(prompts: Sequence[GeometricPrompt], frame: "str | CoordFrame", width: float, height: float) -> list[GeometricPrompt]:
    """Prompts written in ``frame`` as pixels of a ``width``×``height`` image."""
    f = get_coord_frame(frame)
    if f.extent is None:
        return list(prompts)
    return relative_to_pixels(prompts, width, height, f.extent)


def from_pixels(prompts: Sequence[GeometricPrompt], frame: "str | CoordFrame", width: float, height: float) -> list[GeometricPrompt]:
    """Pixel prompts of a ``width``×``height`` image written in ``frame`` (rounded to the
    frame's decimals, as a model would write them)."""
    f = get_coord_frame(frame)
    scale = frame_scale(f, width, height)
    if scale is None:
        return list(prompts)
    sx, sy = 1.0 / scale[0], 1.0 / scale[1]
    out = []
    for p in prompts:
        q = p.scaled(sx, sy)
        r = (lambda v: round(v, f.decimals)) if f.decimals else (lambda v: float(round(v)))
        out.append(
            GeometricPrompt(
                box=None if q.box is None else tuple(r(v) for v in q.box),
                positive_points=tuple((r(x), r(y)) for x, y in q.positive_points),
                negative_points=tuple((r(x), r(y)) for x, y in q.negative_points),
            )
        )
    return out


def check_frame_match(model_frame: str, configured: str, what: str, fix: str) -> None:
    """Refuse a model whose frame contradicts the configured one: one line naming
    ``what`` (the model's path or label) and ``fix`` (how to set or override the frame)."""
    if get_coord_frame(model_frame).name != get_coord_frame(configured).name:
        raise ConfigError(
            f"{what} answers in the {model_frame} coordinate frame but coord_frame is {configured} "
            f"(its answers would be read in the wrong units); {fix}"
        )


__all__ = [
    "COORD_FRAMES",
    "CoordFrame",
    "DEFAULT_COORD_FRAME",
    "check_frame_match",
    "frame_scale",
    "from_pixels",
    "get_coord_frame",
    "relative_to_pixels",
    "to_pixels",
]


def relative_to_pixels(
    prompts: Sequence[GeometricPrompt], width: float, height: float, extent: float, clip: bool = False
) -> list[GeometricPrompt]:
    """Prompts in a frame of ``extent`` units as pixels (``c · n / extent``, multiplied
    first so that the far edge maps to exactly ``n``); ``clip`` keeps them inside."""
    w, h, e = float(width), float(height), float(extent)

    def px(x: float, y: float) -> tuple[float, float]:
        return x * w / e, y * h / e

    out = []
    for p in prompts:
        box = None
        if p.box is not None:
            x1, y1 = px(p.box[0], p.box[1])
            x2, y2 = px(p.box[2], p.box[3])
            box = (x1, y1, x2, y2)
        q = GeometricPrompt.of_floats(
            box,
            tuple(px(x, y) for x, y in p.positive_points),
            tuple(px(x, y) for x, y in p.negative_points),
        )
        out.append(q.clipped(w, h) if clip else q)
    return out
