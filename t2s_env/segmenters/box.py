"""`box`: a weightless segmenter whose mask is the union of the prompted boxes.

It isolates the prompter's quality from the segmenter's and serves tests. A pixel is in a
box when its centre lies inside (``x1 <= c + 0.5 <= x2``), so an integer box
``[x1, y1, x2, y2]`` covers columns ``x1 … x2-1`` and rows ``y1 … y2-1``. An instance
without a box becomes a disc of ``point_radius`` pixels around each positive point;
negative points are ignored.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .base import PromptSet, Segmenter, empty_masks


class BoxSegmenter(Segmenter):
    name = "box"

    def __init__(self, point_radius: float = 8.0) -> None:
        self.point_radius = float(point_radius)
        self.device = torch.device("cpu")

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [tuple(int(v) for v in image.shape[:2]) for image in images]

    def decode(self, embedding: Any, prompt_sets: Sequence[PromptSet]) -> torch.Tensor:
        h, w = embedding
        out = empty_masks(len(prompt_sets), h, w, self.device)
        cols = torch.arange(w, dtype=torch.float64) + 0.5
        rows = torch.arange(h, dtype=torch.float64) + 0.5
        for k, prompts in enumerate(prompt_sets):
            for p in prompts:
                if p.box is not None:
                    x1, y1, x2, y2 = p.box
                    cx = (cols >= x1) & (cols <= x2)
                    ry = (rows >= y1) & (rows <= y2)
                    out[k] |= ry[:, None] & cx[None, :]
                else:
                    r2 = self.point_radius**2
                    for x, y in p.positive_points:
                        out[k] |= ((cols[None, :] - x) ** 2 + (rows[:, None] - y) ** 2) <= r2
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "point_radius": self.point_radius}
