"""`grabcut`: a weightless segmenter built on OpenCV's GrabCut (the synthetic env's default).

Per instance, GrabCut is initialised from a mask: the box is "probably foreground", the
rest of the working crop is "sure background", positive points are "sure foreground"
seeds and negative points "sure background" seeds. A points-only instance gets a square
region around its positive points instead of a box. The instance masks of a prompt set are
OR-ed, as SAM2's are upstream.

Speed: GrabCut costs O(pixels × iterations) with a large constant (1.2 s for an 840² image
on one core), so it runs on a crop around the prompt (box plus a context margin that
supplies the background colour model) that is downscaled to at most ``max_side`` pixels a
side; the result is upsampled back to the crop by the centre rule (each crop pixel takes
the working pixel under its centre: exact, the same on every CPU) and clipped to the box, which keeps the pixel convention
of :mod:`t2s_env.prompt`: an integer box ``[x1, y1, x2, y2]`` bounds columns ``x1 … x2-1``.

Determinism: GrabCut initialises its colour GMMs with k-means on OpenCV's global RNG, so
the RNG is re-seeded with ``seed`` before every call; the same image and prompts always
give the same mask (gymnasium's ``check_env`` re-runs a step and compares the info).

Degenerate prompts never raise: a box thinner than ``min_box_side`` pixels (zero area,
outside the image after clipping, tiny) is returned as the box itself; points without a
box that GrabCut cannot use become discs; if GrabCut finds no foreground (or OpenCV
fails), the instance falls back to its box, or to discs around its positive points.
Raw prompts (``prompt_geometry="raw"``: reversed corners, coordinates outside the frame)
are accepted: GrabCut works on the region between the corners, clipped to the image.

Cost per answer is bounded: an answer with more than ``max_grabcut_instances`` distinct
instances is segmented union-first, by one GrabCut over the window that holds all of
them (every region "probably foreground", every point a seed) on a working crop of at
most ``1.5·max_side`` pixels a side. So no answer costs more than about
``max_grabcut_instances`` single instances, however many it has (a 64-instance answer
took 1.8 s before, ~110 single-instance costs; now ~90 ms, 4–6x a 1–2 instance answer).
The union-first mask is coarser for many small instances: the price of the bound.

Refinement (:meth:`GrabCutSegmenter.decode_with_state`, multi-turn episodes): an instance
whose anchor matches the last turn's is refined from its previous mask. ``refine="connected"``
(default): GrabCut runs afresh from the prompt with every accumulated click as a hard seed,
and only the connected edits under the new clicks change the previous mask (a positive
click adds the connected region of new foreground containing it, a negative click removes
the connected region of lost foreground under it); the same prompt again keeps the mask.
``refine="mask"``: GrabCut initialised from the previous mask (``GC_INIT_WITH_MASK``: the
previous mask "probably foreground", the rest of the region "probably background").
Measured with the oracle clicker on synthetic val (200, strict; benchmarks/probe_refine.py):
connected 76.25 → 77.99 → 79.41 gIoU over 3 turns; mask-init 76.25 → 76.12 → 76.63 (the
colour models re-learnt from a mask that already holds the errors undo correct pixels).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ..errors import ConfigError
from ..prompt import GeometricPrompt, anchor
from ..raster import upsample_mask
from .base import InstanceState, MaskState, PromptSet, Segmenter, empty_masks
from .options import MAX_RADIUS, MAX_SEED, check_int, check_real

#: values of the ``refine`` option
REFINE_MODES = ("connected", "mask")


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
        max_grabcut_instances: answers with more distinct instances than this are
            segmented union-first (one GrabCut for all of them; see the module notes).
        refine: how :meth:`decode_with_state` refines an instance from the last turn's mask:
            ``"connected"`` (default: GrabCut afresh from the prompt with every click as a
            seed, then only the connected edits under the new clicks change the previous
            mask) or ``"mask"`` (GrabCut initialised from the previous mask,
            ``GC_INIT_WITH_MASK``). See the module notes.
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
        max_grabcut_instances: int = 8,
        refine: str = "connected",
    ) -> None:
        n = self.name
        self.max_side = check_int(n, "max_side", max_side, 16)
        self.iterations = check_int(n, "iterations", iterations, 1)
        self.context = check_real(n, "context", context, 0.0)
        self.min_context = check_int(n, "min_context", min_context, 0)
        self.point_region = check_real(n, "point_region", point_region, 0.0, 1.0)
        self.seed_radius = check_real(n, "seed_radius", seed_radius, 0.0, MAX_RADIUS)
        self.point_radius = check_real(n, "point_radius", point_radius, 0.0, MAX_RADIUS)
        self.min_box_side = check_real(n, "min_box_side", min_box_side, 0.0)
        self.seed = check_int(n, "seed", seed, 0, MAX_SEED)
        self.max_grabcut_instances = check_int(n, "max_grabcut_instances", max_grabcut_instances, 1)
        if refine not in REFINE_MODES:
            raise ConfigError(f"grabcut option refine={refine!r} is invalid: give one of {', '.join(REFINE_MODES)}")
        self.refine = refine
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
        memo: dict[Any, list] = {}
        for k, prompts in enumerate(prompt_sets):
            distinct = list(dict.fromkeys(prompts))
            if len(distinct) > self.max_grabcut_instances:
                key: Any = tuple(distinct)
                if key not in memo:
                    memo[key] = self._union(image, distinct)
                hits = memo[key]
            else:
                hits = []
                for p in distinct:
                    if p not in memo:
                        memo[p] = [self._instance(image, p)]
                    hits += memo[p]
            for hit in hits:
                if hit is not None:
                    (x0, y0, x1, y1), m = hit
                    out[k, y0:y1, x0:x1] |= m
        if not len(prompt_sets):
            return empty_masks(0, h, w, self.device)
        return torch.from_numpy(out)

    def decode_with_state(
        self, embedding: Any, prompt_sets: Sequence[PromptSet], previous: Sequence[MaskState | None] | None = None
    ) -> tuple[torch.Tensor, list[MaskState]]:
        """:meth:`decode`, refining each instance whose anchor matches one of the last turn's
        (``previous[k]``) from that instance's mask, by the ``refine`` rule. Unmatched
        instances are segmented afresh; with ``previous`` None the masks are exactly
        :meth:`decode`'s. An answer with more than ``max_grabcut_instances`` distinct
        instances is segmented afresh, union-first (the cost bound)."""
        if previous is not None and len(previous) != len(prompt_sets):
            raise ValueError(f"previous has {len(previous)} states for {len(prompt_sets)} prompt sets; give one (or None) per set")
        image: np.ndarray = embedding
        h, w = image.shape[:2]
        masks = self.decode(embedding, prompt_sets)
        memo: dict[Any, np.ndarray] = {}
        states = []
        for k, prompts in enumerate(prompt_sets):
            prev = previous[k] if previous is not None else None
            distinct = list(dict.fromkeys(p for p in prompts if not p.is_empty))
            instances: dict[tuple, InstanceState] = {}
            refined = False
            for p in distinct:
                a = anchor(p)
                if a in instances:
                    continue
                if p not in memo:
                    memo[p] = self._full(self._instance(image, p), h, w)
                old = prev.instances.get(a) if prev is not None else None
                if old is not None and len(distinct) <= self.max_grabcut_instances and np.shape(old.mask) == (h, w):
                    own = self._refine(image, p, old, memo[p])
                    refined = True
                else:
                    own = memo[p]
                instances[a] = InstanceState(p, own)
            if refined:
                union = np.zeros((h, w), dtype=bool)
                for inst in instances.values():
                    union |= inst.mask
                masks[k] = torch.from_numpy(union)
            states.append(MaskState(masks[k].numpy().copy(), instances))
        return masks, states

    def _refine(self, image: np.ndarray, p: GeometricPrompt, old: InstanceState, fresh: np.ndarray) -> np.ndarray:
        """The instance's mask this turn from its last one (``old``) and the GrabCut of the
        prompt afresh (``fresh``, every click a seed)."""
        prev = np.asarray(old.mask, dtype=bool)
        new_pos = [q for q in p.positive_points if q not in set(old.prompt.positive_points)]
        new_neg = [q for q in p.negative_points if q not in set(old.prompt.negative_points)]
        if not new_pos and not new_neg and p.box == old.prompt.box:
            return prev.copy()  # the same instance again: the mask stays
        if self.refine == "mask":
            return self._full(self._instance(image, p, prior=prev), *prev.shape)
        # "connected": a positive click adds the connected region GrabCut now finds around
        # it; a negative click removes the connected region it now rejects under it.
        out = prev.copy()
        for points, region, keep in ((new_pos, fresh & ~prev, True), (new_neg, prev & ~fresh, False)):
            if not points or not region.any():
                continue
            _, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
            for x, y in points:
                c, r = int(math.floor(x)), int(math.floor(y))
                if 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1] and labels[r, c]:
                    part = labels == labels[r, c]
                    if keep:
                        out |= part
                    else:
                        out &= ~part
        return out

    @staticmethod
    def _full(hit, h: int, w: int) -> np.ndarray:
        out = np.zeros((h, w), dtype=bool)
        if hit is not None:
            (x0, y0, x1, y1), m = hit
            out[y0:y1, x0:x1] = m
        return out

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
            "max_grabcut_instances": self.max_grabcut_instances,
            "refine": self.refine,
            "opencv": cv2.__version__,
        }

    # -- one instance ---------------------------------------------------------------------
    def _region(self, image: np.ndarray, prompt: GeometricPrompt):
        """``(clipped prompt, region)`` where GrabCut should look; region None when the
        prompt is its own mask (``_fallback``); None when it selects nothing."""
        h, w = image.shape[:2]
        coords = list(prompt.box or ()) + [v for pt in prompt.positive_points + prompt.negative_points for v in pt]
        if not all(math.isfinite(v) for v in coords):
            return None  # NaN/inf never come from the parser; selecting nothing is safest
        p = prompt.clipped(w, h)
        if p.box is not None:
            bx1, by1, bx2, by2 = p.box
            if bx2 - bx1 < self.min_box_side or by2 - by1 < self.min_box_side:
                return p, None
            return p, p.box
        if p.positive_points:
            # No box: a square of half-side `point_region · min(H, W)` around the positive
            # points stands in for one (the object is assumed to be about that large).
            r = self.point_region * min(h, w)
            xs = [x for x, _ in p.positive_points]
            ys = [y for _, y in p.positive_points]
            region = (max(0.0, min(xs) - r), max(0.0, min(ys) - r), min(float(w), max(xs) + r), min(float(h), max(ys) + r))
            if region[2] - region[0] < self.min_box_side or region[3] - region[1] < self.min_box_side:
                return p, None
            return p, region
        return None  # only negative points (or nothing): no foreground

    def _instance(self, image: np.ndarray, prompt: GeometricPrompt, prior: np.ndarray | None = None):
        """The instance's mask as ``((x0, y0, x1, y1), (y1-y0, x1-x0) bool)``: a window of
        the image and the mask inside it; None when the instance selects nothing.
        ``prior`` (H, W) bool: the last turn's mask, which initialises GrabCut inside the
        region ("probably foreground" where it is set, "probably background" elsewhere)."""
        h, w = image.shape[:2]
        found = self._region(image, prompt)
        if found is None:
            return None
        p, region = found
        if region is None:
            return self._fallback(p, w, h)
        try:
            hit = self._grabcut(image, [(p, region)], self.max_side, prior)
        except cv2.error:
            hit = None
        return hit if hit is not None else self._fallback(p, w, h)

    def _union(self, image: np.ndarray, prompts: Sequence[GeometricPrompt]) -> list:
        """Windowed masks whose OR is the prompt set's mask, union-first: one GrabCut over
        all instances that need one (the rest are their own masks)."""
        h, w = image.shape[:2]
        items, hits = [], []
        for prompt in prompts:
            found = self._region(image, prompt)
            if found is None:
                continue
            p, region = found
            if region is None:
                hits.append(self._fallback(p, w, h))
            else:
                items.append((p, region))
        if items:
            side = (3 * self.max_side) // 2
            try:
                hit = self._grabcut(image, items, side)
            except cv2.error:
                hit = None
            if hit is not None:
                hits.append(hit)
            else:
                hits += [self._fallback(p, w, h) for p, _ in items]
        return hits

    def _grabcut(self, image: np.ndarray, items: Sequence[tuple[GeometricPrompt, tuple]], max_side: int,
                 prior: np.ndarray | None = None):
        """GrabCut on the (downscaled) window around the regions of ``items`` (a box, or the
        square around a points-only instance, each); None when it finds nothing.

        The window is the regions' bounding box plus context margins: the regions are
        "probably foreground", the margin "sure background", points are seeds.
        """
        h, w = image.shape[:2]
        x0, y0, x1, y1 = w, h, 0, 0
        for _, (rx1, ry1, rx2, ry2) in items:
            # Integer window of the region's pixels (centre rule), widened by the context margin.
            c0, c1 = int(math.floor(rx1 + 0.5)), int(math.ceil(rx2 - 0.5))  # columns c0 … c1-1
            r0, r1 = int(math.floor(ry1 + 0.5)), int(math.ceil(ry2 - 0.5))
            mx = max(self.min_context, int(round(self.context * (c1 - c0))))
            my = max(self.min_context, int(round(self.context * (r1 - r0))))
            x0, x1 = min(x0, max(0, c0 - mx)), max(x1, min(w, c1 + mx))
            y0, y1 = min(y0, max(0, r0 - my)), max(y1, min(h, r1 + my))
        cw, ch = x1 - x0, y1 - y0
        if cw < 4 or ch < 4:
            return None
        crop = image[y0:y1, x0:x1]
        scale = min(1.0, max_side / max(cw, ch))
        ww, wh = max(2, int(round(cw * scale))), max(2, int(round(ch * scale)))
        sx, sy = ww / cw, wh / ch  # working pixels per image pixel
        work = crop if (ww, wh) == (cw, ch) else cv2.resize(crop, (ww, wh), interpolation=cv2.INTER_AREA)
        work = np.ascontiguousarray(work)

        # The regions at working scale, by the centre rule: working pixel j covers image
        # x = x0 + (j + 0.5) / sx.
        cx = x0 + (np.arange(ww) + 0.5) / sx
        cy = y0 + (np.arange(wh) + 0.5) / sy
        inside = np.zeros((wh, ww), dtype=bool)
        for _, region in items:
            _fill_centres(inside, cx, cy, region)
        mask = np.where(inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
        if prior is not None:
            was = prior[y0:y1, x0:x1].astype(np.uint8)
            if (ww, wh) != (cw, ch):
                was = cv2.resize(was, (ww, wh), interpolation=cv2.INTER_NEAREST)
            mask[inside & (was == 0)] = cv2.GC_PR_BGD
        if inside.all():
            # The regions fill the window (they span the whole image): the window's rim
            # trains the background model as "probably background".
            mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = cv2.GC_PR_BGD
        rad = max(1, int(round(self.seed_radius * min(sx, sy))))
        for kind, label in (("negative_points", cv2.GC_BGD), ("positive_points", cv2.GC_FGD)):
            for p, _ in items:
                for x, y in getattr(p, kind):
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
        out = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if (ww, wh) != (cw, ch):
            out = upsample_mask(out, cw, ch)
        # Clip to the regions at full resolution (upsampling blurs across their edges).
        ix = x0 + np.arange(cw) + 0.5
        iy = y0 + np.arange(ch) + 0.5
        keep = np.zeros((ch, cw), dtype=bool)
        for _, region in items:
            _fill_centres(keep, ix, iy, region)
        out &= keep
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


def _fill_centres(mask: np.ndarray, cx: np.ndarray, cy: np.ndarray, region: tuple) -> None:
    """Set the cells whose centres (increasing ``cx`` per column, ``cy`` per row) lie in
    ``region`` (``x1 <= cx <= x2`` and ``y1 <= cy <= y2``): the same comparisons as a
    full-grid test, done by binary search and one slice."""
    rx1, ry1, rx2, ry2 = region
    c0, c1 = np.searchsorted(cx, rx1, "left"), np.searchsorted(cx, rx2, "right")
    r0, r1 = np.searchsorted(cy, ry1, "left"), np.searchsorted(cy, ry2, "right")
    if c0 < c1 and r0 < r1:
        mask[r0:r1, c0:c1] = True
