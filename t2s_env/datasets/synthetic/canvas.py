"""Canvas and drawing primitives: noise, geometry helpers, sprite canvases, rotated patches,
and the scene being drawn (colour, exact label map, occupancy)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from ... import raster
from .catalogue import LABEL_IDS

#: sprite-label value for painted pixels that belong to no category (aprons, banks, wakes)
CTX = 255
# occupancy codes: where a new object may go
FREE, SOFT, HARD, WATER, PAVED = 0, 1, 2, 3, 4


def _rgb(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise (about unit variance) with features about ``cell`` pixels wide:
    a small Gaussian grid upsampled bicubically (much cheaper than per-pixel noise)."""
    gh, gw = max(2, int(round(h / cell)) + 1), max(2, int(round(w / cell)) + 1)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return raster.resize(small, w, h, "cubic")


def _noise1d(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    """A smooth 1-D curve of length ``n`` through ``knots`` Gaussian values."""
    small = rng.standard_normal((1, max(2, knots))).astype(np.float32)
    return raster.resize(small, n, 1, "cubic")[0]


def _ipts(points) -> np.ndarray:
    """Points rounded to the int64 (N, 2) array the raster functions take."""
    return raster.int_points(points)


def _rot(angle_deg: float, v) -> np.ndarray:
    """Rotate vector(s) ``v`` like a sprite rotated by ``angle_deg`` (y down,
    positive angle = counter-clockwise on screen); elementwise, no BLAS."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[..., 0] * c + v[..., 1] * s, v[..., 1] * c - v[..., 0] * s], axis=-1)


def _angle_of(v) -> float:
    """The sprite angle that points a sprite's +x axis along vector ``v``."""
    return math.degrees(math.atan2(-v[1], v[0]))


def _fill(rgb: np.ndarray, lab: np.ndarray, points, colour, code: int) -> None:
    """Fill a polygon in a sprite's colour and label layers."""
    pts = _ipts(points)
    raster.fill_poly(rgb, pts, [float(c) for c in colour])
    raster.fill_poly(lab, pts, int(code))


def _canvas(w: float, h: float, colour=None) -> tuple[np.ndarray, np.ndarray]:
    """An empty sprite: colour layer (h, w, 3) float32 and label layer (0 = transparent)."""
    w, h = max(1, int(round(w))), max(1, int(round(h)))
    rgb = np.zeros((h, w, 3), np.float32)
    if colour is not None:
        rgb[:] = colour
    return rgb, np.zeros((h, w), np.uint8)


class _Patch:
    """A rotated sprite positioned in the image: top-left corner ``(x0, y0)``, rotated
    labels ``lab``, and the affine map ``M`` from sprite to patch coordinates.

    The colours are rotated only when first needed (:attr:`rgb`): most candidate
    positions are rejected by :meth:`_Scene.fits`, which needs the labels alone."""

    def __init__(self, x0: int, y0: int, lab: np.ndarray, M: np.ndarray, source: np.ndarray, source_lab: np.ndarray):
        self.x0, self.y0, self.lab, self.M = x0, y0, lab, M
        self._source, self._source_lab, self._rgb = source, source_lab, None
        self._grown: dict[int, np.ndarray] = {}

    def grown(self, margin: int) -> np.ndarray:
        """Opaque pixels dilated by ``margin`` (cached: shared by every position tried)."""
        if margin not in self._grown:
            self._grown[margin] = raster.dilate(self.lab > 0, margin)
        return self._grown[margin]

    @property
    def rgb(self) -> np.ndarray:
        """The rotated colours (computed on first use)."""
        if self._rgb is None:
            src, opaque = self._source, self._source_lab > 0
            if opaque.any() and not opaque.all():
                # transparent texels take the mean colour so bilinear edges don't pull in black
                src = src.copy()
                src[~opaque] = src[opaque].mean(axis=0)
            h, w = self.lab.shape
            self._rgb = raster.warp_affine(src, self.M, w, h)
        return self._rgb

    def point(self, x: float, y: float) -> np.ndarray:
        """Image coordinates of sprite point (x, y)."""
        px, py = raster.apply_affine(self.M, x, y)
        return np.array([px + self.x0, py + self.y0])

    def moved_to(self, at) -> "_Patch":
        """The same patch with its centre moved to image point ``at``."""
        h, w = self.lab.shape
        q = _Patch(int(round(at[0] - (w - 1) / 2)), int(round(at[1] - (h - 1) / 2)), self.lab, self.M,
                   self._source, self._source_lab)
        q._rgb, q._grown = self._rgb, self._grown
        return q


class _Scene:
    """The image being drawn: colour (float32, 0-255), a per-pixel label map (category ids,
    exact: the target mask is ``labels == id``), and an occupancy map that keeps objects
    from landing on each other."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, cats: Sequence[str]) -> None:
        self.rng = rng
        self.W, self.H = width, height
        #: the scale of the scene: object sizes are fractions of it (a zoom per image)
        self.u = min(width, height) * rng.uniform(0.85, 1.2)
        self.cats = list(cats)
        self.img = np.zeros((height, width, 3), np.float32)
        self.labels = np.zeros((height, width), np.uint8)
        self.occ = np.zeros((height, width), np.uint8)
        sun = rng.uniform(0, 2 * math.pi)
        #: unit vector along which shadows fall; light comes from -sun
        self.sun = np.array([math.cos(sun), math.sin(sun)])
        self.shadow_k = rng.uniform(0.4, 0.9)  # shadow length per unit of object height
        self.shadow_rgb = _rgb(0.52, 0.55, 0.62) * rng.uniform(0.9, 1.15)
        #: mid-frequency texture shared by every painted surface (cheap: computed once)
        self.tex = _smooth_noise(rng, height, width, cell=5.0)
        self.instances: Counter[str] = Counter()
        self.anchors: dict[str, list[np.ndarray]] = {}
        self.coast: tuple[int, np.ndarray] | None = None
        self.river_path: np.ndarray | None = None
        self.river_tangent: np.ndarray | None = None
        self.river_mask: np.ndarray | None = None
        self.river_zone: np.ndarray | None = None
        self.river_width = 0.0
        self.berths: list[tuple[np.ndarray, np.ndarray, float, float]] = []

    # -- sprites ---------------------------------------------------------------------------
    def sprite(self, rgb: np.ndarray, lab: np.ndarray, angle: float, at, anchor=None, pad: int = 3) -> _Patch:
        """Rotate a sprite by ``angle`` degrees and place it so that sprite point ``anchor``
        (default: its centre) lands on image point ``at``.

        Labels rotate with nearest-neighbour interpolation, so the painted pixels and the
        label map stay exactly in step; colours rotate bilinearly."""
        h, w = lab.shape
        a = math.radians(angle)
        c, s = abs(math.cos(a)), abs(math.sin(a))
        nw = int(math.ceil(w * c + h * s)) + 2 * pad
        nh = int(math.ceil(w * s + h * c)) + 2 * pad
        M = raster.rotation_matrix(((w - 1) / 2, (h - 1) / 2), angle)
        M[0, 2] += (nw - 1) / 2 - (w - 1) / 2
        M[1, 2] += (nh - 1) / 2 - (h - 1) / 2
        lab_r = raster.warp_affine(lab, M, nw, nh, nearest=True)
        if anchor is None:
            anchor = ((w - 1) / 2, (h - 1) / 2)
        ax, ay = raster.apply_affine(M, anchor[0], anchor[1])
        return _Patch(int(round(at[0] - ax)), int(round(at[1] - ay)), lab_r, M, rgb, lab)

    def _clip(self, x0: int, y0: int, h: int, w: int):
        """Overlap of a (h, w) patch at (x0, y0) with the image: image and patch slices."""
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x0 + w, self.W), min(y0 + h, self.H)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return (slice(iy0, iy1), slice(ix0, ix1), slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))

    def fits(self, p: _Patch, ok=(FREE,), margin: int = 1, min_inside: float = 1.0, min_water: float = 0.0) -> bool:
        """Whether the patch's opaque pixels (grown by ``margin``) lie on occupancy codes
        ``ok``, with at least ``min_inside`` of them inside the image (and ``min_water`` of
        them on water, for structures built out into the water)."""
        opaque = p.lab > 0
        total = int(np.count_nonzero(opaque))
        cl = self._clip(p.x0, p.y0, *p.lab.shape)
        if total == 0 or cl is None:
            return False
        ys, xs, py, px = cl
        inside = opaque[py, px]
        n_inside = int(np.count_nonzero(inside))
        if n_inside < min_inside * total:
            return False
        if margin > 0:
            inside = p.grown(margin)[py, px]
        vals = self.occ[ys, xs][inside]
        table = np.zeros(8, bool)
        table[list(ok)] = True
        if not table[vals].all():
            return False
        if min_water > 0:
            return np.count_nonzero(self.occ[ys, xs][opaque[py, px]] == WATER) >= min_water * n_inside
        return True

    def put(self, p: _Patch, occ_cat: int = HARD, occ_ctx: int = SOFT, shadow: float = 0.0, tex: float = 0.05) -> None:
        """Paint a patch: cast its shadow (``shadow`` = object height in pixels), then
        write its colours, labels and occupancy wherever it is opaque."""
        if shadow > 0:
            self.cast_shadow(p.lab > 0, p.x0, p.y0, shadow)
        cl = self._clip(p.x0, p.y0, *p.lab.shape)
        if cl is None:
            return
        ys, xs, py, px = cl
        lab = p.lab[py, px]
        rr, cc = np.nonzero(lab)
        labs = lab[rr, cc]
        idx = self._flat(rr + ys.start, cc + xs.start)
        rgb = p.rgb[py, px][rr, cc]
        if tex:
            rgb *= (1.0 + tex * self.tex.ravel()[idx])[:, None]
        ctx = labs == CTX
        self._write(idx, rgb, np.where(ctx, 0, labs), np.where(ctx, occ_ctx, occ_cat))

    def _flat(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return rows.astype(np.intp) * self.W + cols

    def _write(self, idx: np.ndarray, rgb: np.ndarray, labels, occ) -> None:
        """Write pixels given by flat indices: integer indexing of the contiguous arrays is
        several times faster than boolean masks over large regions."""
        self.img.reshape(-1, 3)[idx] = rgb
        self.labels.ravel()[idx] = labels
        if occ is not None:
            self.occ.ravel()[idx] = occ

    def cast_shadow(self, mask: np.ndarray, x0: int, y0: int, height: float) -> None:
        """Darken the ground a raised object shades: its footprint swept along the sun
        direction (a dilation by a line segment, i.e. the exact prism shadow)."""
        d = self.sun * height * self.shadow_k
        dx, dy = int(round(d[0])), int(round(d[1]))
        if dx == 0 and dy == 0:
            return
        px, py = abs(dx), abs(dy)
        swept = raster.sweep(mask, dx, dy)
        mp = np.zeros_like(swept)
        mp[py:py + mask.shape[0], px:px + mask.shape[1]] = mask
        sh = swept & ~mp
        cl = self._clip(x0 - px, y0 - py, *sh.shape)
        if cl is None:
            return
        ys, xs, sy, sx = cl
        self.img[ys, xs][sh[sy, sx]] *= self.shadow_rgb

    def paint_mask(self, mask: np.ndarray, colour, label: int, occ_code: int | None, tex: float = 0.05,
                   region: tuple[slice, slice] | None = None) -> None:
        """Paint a mask (roads, rivers, sea) with a colour (flat RGB, or per pixel like the
        mask), a label and an occupancy code (``None`` keeps occupancy). The mask covers
        the whole image, or ``region`` (row and column slices) when given."""
        oy, ox = (region[0].start, region[1].start) if region else (0, 0)
        rr, cc = np.nonzero(mask)
        if rr.size == 0:
            return
        idx = self._flat(rr + oy, cc + ox)
        colour = np.asarray(colour, np.float32)
        values = colour[rr, cc] if colour.ndim == 3 else colour[None, :]
        values = values * (1.0 + tex * self.tex.ravel()[idx])[:, None]
        self._write(idx, values, 0 if label == CTX else label, occ_code)

    # -- helpers ---------------------------------------------------------------------------
    def random_point(self, margin: float | tuple[float, float] = 0.0) -> np.ndarray:
        """A uniform point at least ``margin`` (or (mx, my)) pixels from the image edges,
        when the image is big enough for that."""
        mx, my = margin if isinstance(margin, tuple) else (margin, margin)
        mx, my = min(mx, self.W / 2 - 1), min(my, self.H / 2 - 1)
        return np.array([self.rng.uniform(mx, self.W - 1 - mx), self.rng.uniform(my, self.H - 1 - my)])

    def code(self, category: str) -> int:
        return LABEL_IDS[category]

    def occ_for(self, category: str, target: bool) -> int:
        """Target pixels are never covered by a later object."""
        return HARD if target else SOFT
