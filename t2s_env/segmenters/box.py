"""`box`: a weightless segmenter whose mask is the union of the prompted boxes.

It isolates the prompter's quality from the segmenter's and serves tests. A pixel is in a
box when its centre lies inside (``x1 <= c + 0.5 <= x2``), so an integer box
``[x1, y1, x2, y2]`` covers columns ``x1 … x2-1`` and rows ``y1 … y2-1``. An instance
without a box becomes a disc of ``point_radius`` pixels around each positive point;
negative points are ignored.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from .base import PromptSet, Segmenter
from .options import MAX_RADIUS, check_real


class BoxSegmenter(Segmenter):
    """Union of box fills (and point discs), written straight into one mask per prompt set.

    Raw prompts (``prompt_geometry="raw"``) are accepted as written: a box fills the pixels
    whose centres lie between its corners as given (``x1 <= c + 0.5 <= x2`` and likewise
    for rows), so a box with reversed corners fills nothing, and the parts of a box or a
    disc outside the frame are cut off by the frame. This is what a box-fill stand-in for
    SAM2 does with upstream's unclipped prompts (it paints the rectangle between the corners
    without reordering them).
    """

    name = "box"

    def __init__(self, point_radius: float = 8.0) -> None:
        self.point_radius = check_real(self.name, "point_radius", point_radius, 0.0, MAX_RADIUS)
        self.device = torch.device("cpu")

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [tuple(int(v) for v in image.shape[:2]) for image in images]

    def decode(self, embedding: Any, prompt_sets: Sequence[PromptSet]) -> torch.Tensor:
        h, w = embedding
        out = np.zeros((len(prompt_sets), h, w), dtype=bool)
        for k, prompts in enumerate(prompt_sets):
            frame = out[k]
            for p in prompts:
                if p.box is not None:
                    x1, y1, x2, y2 = p.box
                    c0, c1 = _centre_span(x1, x2, w)
                    r0, r1 = _centre_span(y1, y2, h)
                    if c0 < c1 and r0 < r1:
                        frame[r0:r1, c0:c1] = True
                else:
                    for x, y in p.positive_points:
                        self._disc(frame, x, y)
        return torch.from_numpy(out)

    def _disc(self, frame: np.ndarray, x: float, y: float) -> None:
        """Pixels whose centre is within ``point_radius`` of (x, y), on the window that can
        hold them (the same distance test as on the whole frame, for a fraction of it)."""
        h, w = frame.shape
        r = self.point_radius
        c0, c1 = _window(x - r - 1.0, x + r + 1.0, w)
        r0, r1 = _window(y - r - 1.0, y + r + 1.0, h)
        if c0 >= c1 or r0 >= r1:
            return
        if x.is_integer() and y.is_integer() and abs(x) < 2**40 and abs(y) < 2**40:
            # Integer centre: every centre offset c + 0.5 - x is exact, so the disc is one
            # stencil shifted (computed once per segmenter).
            stencil, k = self._stencil()
            xi, yi = int(x), int(y)
            frame[r0:r1, c0:c1] |= stencil[r0 - yi + k : r1 - yi + k, c0 - xi + k : c1 - xi + k]
            return
        cols = np.arange(c0, c1, dtype=np.float64) + 0.5
        rows = np.arange(r0, r1, dtype=np.float64) + 0.5
        frame[r0:r1, c0:c1] |= ((cols[None, :] - x) ** 2 + (rows[:, None] - y) ** 2) <= r * r

    def _stencil(self) -> tuple[np.ndarray, int]:
        """The disc around an integer point (0, 0) on offsets -k … k-1 (+ margin): cell
        (k + dy, k + dx) is pixel (x + dx, y + dy)."""
        cached = getattr(self, "_stencil_cache", None)
        if cached is None:
            r = self.point_radius
            k = int(math.ceil(r)) + 3
            d = np.arange(-k, k + 1, dtype=np.float64) + 0.5
            cached = ((d[None, :]) ** 2 + (d[:, None]) ** 2 <= r * r, k)
            self._stencil_cache = cached
        return cached

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "point_radius": self.point_radius}


def _centre_span(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Indices ``[a, b)`` of the pixels ``c`` in ``0 … n-1`` with ``lo <= c + 0.5 <= hi``.

    Clamping to [-1, n + 1] first changes no comparison with a pixel centre and keeps
    ``lo - 0.5`` exact in floating point.
    """
    lo = min(max(lo, -1.0), n + 1.0)
    hi = min(max(hi, -1.0), n + 1.0)
    return max(0, math.ceil(lo - 0.5)), min(n, math.floor(hi - 0.5) + 1)


def _window(lo: float, hi: float, n: int) -> tuple[int, int]:
    lo = min(max(lo, -1.0), n + 1.0)
    hi = min(max(hi, -1.0), n + 1.0)
    return max(0, math.floor(lo)), min(n, math.ceil(hi) + 1)
