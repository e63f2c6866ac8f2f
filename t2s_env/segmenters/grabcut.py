"""`grabcut`: a weightless segmenter built on OpenCV's GrabCut (the synthetic env's default).

Per instance, GrabCut is initialised from a mask: the box is "probably foreground", the
rest of the working crop is "sure background", positive points are "sure foreground"
seeds and negative points "sure background" seeds. A points-only instance gets a square
region around its positive points instead of a box. The instance masks of a prompt set are
OR-ed, as SAM2's are upstream.

Speed: GrabCut costs O(pixels × iterations) with a large constant (1.2 s for an 840² image
on one core), so it runs on a crop around the prompt (box plus a context margin that
supplies the background colour model) that is downscaled to at most ``max_side`` pixels a
side; the result is upsampled back to the crop with bilinear interpolation of the 0/1
mask (smoother edges than nearest) and clipped to the box, which keeps the pixel convention
of :mod:`t2s_env.prompt`: an integer box ``[x1, y1, x2, y2]`` bounds columns ``x1 … x2-1``.

Determinism: GrabCut initialises its colour GMMs with k-means on OpenCV's global RNG, so
the RNG is re-seeded with ``seed`` before every call; the same image and prompts always
give the same mask (gymnasium's ``check_env`` re-runs a step and compares the info).

Degenerate prompts never raise: a box thinner than ``min_box_side`` pixels (zero area,
outside the image after clipping, tiny) is returned as the box itself; points without a
box that GrabCut cannot use become discs; if GrabCut finds no foreground (or OpenCV
fails), the instance falls back to its box, or to discs around its positive points.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ..prompt import GeometricPrompt
from .base import PromptSet, Segmenter, empty_masks


class GrabCutSegmenter(Segmenter):
    """GrabCut per instance on a downscaled crop around the prompt.

    Arguments:
        max_side: the working crop is downscaled so that its longer side is at most this
            many pixels (GrabCut's cost grows with the pixel count; 112 keeps a step ≤ 50 ms).
        iterations: GrabCut iterations (OpenCV's ``iterCount``).
        context: margin around the box, as a fraction of the box side, whose pixels train
            the background model (at least ``min_context`` pixels).
        min_context: the margin's minimum in pixels of the full image.
        point_region: half-side, as a fraction of the image's shorter side, of the region
            given to a points-only instance around each positive point.
        seed_radius: radius in full-image pixels of the seed disc painted at each point
            (at least one working pixel).
        point_radius: radius of the disc a point becomes when GrabCut cannot be used (the
            ``box`` segmenter's default).
        min_box_side: a box thinner than this (pixels, after clipping) is its own mask.
        seed: OpenCV RNG seed set before every GrabCut call (determinism).
    """

    name = "grabcut"

    def __init__(
        self,
        max_side: int = 112,
        iterations: int = 3,
        context: float = 0.25,
        min_context: int = 8,
        point_region: float = 0.15,
        seed_radius: float = 4.0,
        point_radius: float = 8.0,
        min_box_side: float = 4.0,
        seed: int = 0,
    ) -> None:
        from ..errors import ConfigError

        if int(max_side) < 16:
            raise ConfigError(f"grabcut max_side must be >= 16, got {max_side!r}")
        if int(iterations) < 1:
            raise ConfigError(f"grabcut iterations must be >= 1, got {iterations!r}")
        self.max_side = int(max_side)
        self.iterations = int(iterations)
        self.context = float(context)
        self.min_context = int(min_context)
        self.point_region = float(point_region)
        self.seed_radius = float(seed_radius)
        self.point_radius = float(point_radius)
        self.min_box_side = float(min_box_side)
        self.seed = int(seed)
        self.device = torch.device("cpu")

    # -- interface ------------------------------------------------------------------------
    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        """The image itself, (H, W, 3) uint8 and C-contiguous (what cv2.grabCut needs)."""
        out = []
        for image in images:
            arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"grabcut needs an (H, W, 3) image, got shape {arr.shape}")
            out.append(np.ascontiguousarray(arr, dtype=np.uint8))
        return out

    def decode(self, embedding: Any, prompt_sets: Sequence[PromptSet]) -> torch.Tensor:
        """(K, H, W) bool on CPU: per prompt set, the OR of its instance masks.

        Identical instances (frequent among the completions of one GRPO group) are
        segmented once per call.
        """
        image: np.ndarray = embedding
        h, w = image.shape[:2]
        out = np.zeros((len(prompt_sets), h, w), dtype=bool)
        memo: dict[GeometricPrompt, tuple[tuple[int, int, int, int], np.ndarray] | None] = {}
        for k, prompts in enumerate(prompt_sets):
            for p in prompts:
                if p not in memo:
                    memo[p] = self._instance(image, p)
                hit = memo[p]
                if hit is not None:
                    (x0, y0, x1, y1), m = hit
                    out[k, y0:y1, x0:x1] |= m
        if not len(prompt_sets):
            return empty_masks(0, h, w, self.device)
        return torch.from_numpy(out)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_side": self.max_side,
            "iterations": self.iterations,
            "context": self.context,
            "min_context": self.min_context,
            "point_region": self.point_region,
            "seed_radius": self.seed_radius,
            "point_radius": self.point_radius,
            "min_box_side": self.min_box_side,
            "seed": self.seed,
            "opencv": cv2.__version__,
        }

    # -- one instance ---------------------------------------------------------------------
    def _instance(self, image: np.ndarray, prompt: GeometricPrompt):
        """The instance's mask as ``((x0, y0, x1, y1), (y1-y0, x1-x0) bool)``: a window of
        the image and the mask inside it; None when the instance selects nothing."""
        h, w = image.shape[:2]
        coords = list(prompt.box or ()) + [v for pt in prompt.positive_points + prompt.negative_points for v in pt]
        if not all(math.isfinite(v) for v in coords):
            return None  # NaN/inf never come from the parser; selecting nothing is safest
        p = prompt.clipped(w, h)
        if p.box is not None:
            bx1, by1, bx2, by2 = p.box
            if bx2 - bx1 < self.min_box_side or by2 - by1 < self.min_box_side:
                return self._fallback(p, w, h)
            region = p.box
        elif p.positive_points:
            # No box: a square of half-side `point_region · min(H, W)` around the positive
            # points stands in for one (the object is assumed to be about that large).
            r = self.point_region * min(h, w)
            xs = [x for x, _ in p.positive_points]
            ys = [y for _, y in p.positive_points]
            region = (max(0.0, min(xs) - r), max(0.0, min(ys) - r), min(float(w), max(xs) + r), min(float(h), max(ys) + r))
            if region[2] - region[0] < self.min_box_side or region[3] - region[1] < self.min_box_side:
                return self._fallback(p, w, h)
        else:
            return None  # only negative points (or nothing): no foreground
        try:
            hit = self._grabcut(image, p, region)
        except cv2.error:
            hit = None
        return hit if hit is not None else self._fallback(p, w, h)

    def _grabcut(self, image: np.ndarray, p: GeometricPrompt, region: tuple[float, float, float, float]):
        """GrabCut on the (downscaled) window around ``region`` (the box, or the square
        around a points-only instance); None when it finds nothing.

        The window is the region plus a context margin: the region is "probably
        foreground", the margin "sure background", points are seeds.
        """
        h, w = image.shape[:2]
        rx1, ry1, rx2, ry2 = region
        # Integer window of the region's pixels (centre rule), widened by the context margin.
        c0, c1 = int(math.floor(rx1 + 0.5)), int(math.ceil(rx2 - 0.5))  # columns c0 … c1-1
        r0, r1 = int(math.floor(ry1 + 0.5)), int(math.ceil(ry2 - 0.5))
        mx = max(self.min_context, int(round(self.context * (c1 - c0))))
        my = max(self.min_context, int(round(self.context * (r1 - r0))))
        x0, x1 = max(0, c0 - mx), min(w, c1 + mx)
        y0, y1 = max(0, r0 - my), min(h, r1 + my)
        cw, ch = x1 - x0, y1 - y0
        if cw < 4 or ch < 4:
            return None
        crop = image[y0:y1, x0:x1]
        scale = min(1.0, self.max_side / max(cw, ch))
        ww, wh = max(2, int(round(cw * scale))), max(2, int(round(ch * scale)))
        sx, sy = ww / cw, wh / ch  # working pixels per image pixel
        work = crop if (ww, wh) == (cw, ch) else cv2.resize(crop, (ww, wh), interpolation=cv2.INTER_AREA)
        work = np.ascontiguousarray(work)

        # The region at working scale, by the centre rule: working pixel j covers image
        # x = x0 + (j + 0.5) / sx.
        cx = x0 + (np.arange(ww) + 0.5) / sx
        cy = y0 + (np.arange(wh) + 0.5) / sy
        inside = ((cy >= ry1) & (cy <= ry2))[:, None] & ((cx >= rx1) & (cx <= rx2))[None, :]
        mask = np.where(inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
        if inside.all():
            # The region fills the window (it spans the whole image): the window's rim
            # trains the background model as "probably background".
            mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = cv2.GC_PR_BGD
        rad = max(1, int(round(self.seed_radius * min(sx, sy))))
        for pts, label in ((p.negative_points, cv2.GC_BGD), (p.positive_points, cv2.GC_FGD)):
            for x, y in pts:
                px, py = int((x - x0) * sx), int((y - y0) * sy)
                if 0 <= px < ww and 0 <= py < wh:
                    cv2.circle(mask, (px, py), rad, int(label), thickness=-1)
        # GrabCut needs samples for both colour models.
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if not fg.any() or fg.all():
            return None
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        cv2.grabCut(work, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        res = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
        if (ww, wh) != (cw, ch):
            res = cv2.resize(res, (cw, ch), interpolation=cv2.INTER_LINEAR)
        out = res >= 0.5
        # Clip to the region at full resolution (upsampling blurs across its edges).
        ix = x0 + np.arange(cw) + 0.5
        iy = y0 + np.arange(ch) + 0.5
        out &= ((iy >= ry1) & (iy <= ry2))[:, None] & ((ix >= rx1) & (ix <= rx2))[None, :]
        if not out.any():
            return None
        return (x0, y0, x1, y1), out

    def _fallback(self, p: GeometricPrompt, w: int, h: int):
        """The prompt itself: its box (centre rule), else discs around its positive points."""
        if p.box is not None:
            x1, y1, x2, y2 = p.box
            c0, c1 = max(0, int(math.floor(x1 + 0.5))), min(w, int(math.ceil(x2 - 0.5)))
            r0, r1 = max(0, int(math.floor(y1 + 0.5))), min(h, int(math.ceil(y2 - 0.5)))
            # A degenerate box whose edges fall between two pixel centres covers nothing;
            # keep it empty rather than inventing a pixel (as the `box` segmenter does).
            if c1 <= c0 or r1 <= r0:
                return None
            return (c0, r0, c1, r1), np.ones((r1 - r0, c1 - c0), dtype=bool)
        if not p.positive_points:
            return None
        r = self.point_radius
        xs = [x for x, _ in p.positive_points]
        ys = [y for _, y in p.positive_points]
        x0, x1 = max(0, int(math.floor(min(xs) - r))), min(w, int(math.ceil(max(xs) + r)) + 1)
        y0, y1 = max(0, int(math.floor(min(ys) - r))), min(h, int(math.ceil(max(ys) + r)) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        cols = x0 + np.arange(x1 - x0) + 0.5
        rows = y0 + np.arange(y1 - y0) + 0.5
        m = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for x, y in p.positive_points:
            m |= ((cols[None, :] - x) ** 2 + (rows[:, None] - y) ** 2) <= r * r
        return (x0, y0, x1, y1), m
