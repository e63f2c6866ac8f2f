"""Exact raster primitives in numpy: polygon fill, lines, discs, morphology, connected
components, Euclidean distance transform, resampling, affine warps and blur.

They replace OpenCV where the output is data or a score (the synthetic generator, the
oracles' distance transform, GrabCut's mask upsampling): OpenCV's drawing, resampling and
distance code differs between its releases and, through SIMD/IPP paths, between CPUs. Here
every result comes from integer arithmetic or single IEEE-754 float64 operations in a fixed
order (no BLAS, no fused or SIMD transcendental kernels: :func:`sin` and :func:`cos` call
the C library once per element), so the same inputs give the same pixels on every machine.

Conventions: ``img[row, col]``; points are ``(x, y)`` = (column, row); a pixel is drawn when
its centre (its integer coordinates) lies in the shape. Drawing functions write ``value``
in place (a scalar, or one value per channel).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np


# -- scalar maths ---------------------------------------------------------------------------

def sin(x) -> np.ndarray:
    """``sin`` of every element through the C library (numpy's SIMD kernels vary by CPU)."""
    a = np.asarray(x, dtype=np.float64)
    return np.array([math.sin(v) for v in a.ravel().tolist()], dtype=np.float64).reshape(a.shape)


def cos(x) -> np.ndarray:
    """``cos`` of every element through the C library (numpy's SIMD kernels vary by CPU)."""
    a = np.asarray(x, dtype=np.float64)
    return np.array([math.cos(v) for v in a.ravel().tolist()], dtype=np.float64).reshape(a.shape)


def norm_rows(v) -> np.ndarray:
    """Euclidean length of each row of an (N, 2) array (no BLAS)."""
    v = np.asarray(v, dtype=np.float64)
    return np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def int_points(points) -> np.ndarray:
    """Points rounded half away from zero to an int64 (N, 2) array."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (np.sign(p) * np.floor(np.abs(p) + 0.5)).astype(np.int64)


# -- drawing ------------------------------------------------------------------------------

def _paint(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, value) -> None:
    h, w = img.shape[:2]
    keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    if img.ndim == 3:
        img[rows[keep], cols[keep]] = np.asarray(value, dtype=img.dtype).reshape(-1)[: img.shape[2]]
    else:
        img[rows[keep], cols[keep]] = value


def _paint_box(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, inside: np.ndarray, value) -> None:
    """Paint ``inside`` (a bool array for rows y0..y1, cols x0..x1 inclusive)."""
    rr, cc = np.nonzero(inside)
    _paint(img, rr + y0, cc + x0, value)


def line(img: np.ndarray, p, q, value, thickness: int = 1) -> None:
    """A segment. Thickness 1: one pixel per step along the longer axis (rounded half up);
    thicker: every pixel centre within ``thickness / 2`` of the segment (round caps)."""
    (x0, y0), (x1, y1) = (int(v) for v in p), (int(v) for v in q)
    dx, dy = x1 - x0, y1 - y0
    if thickness <= 1:
        n = max(abs(dx), abs(dy))
        if n == 0:
            _paint(img, np.array([y0]), np.array([x0]), value)
            return
        i = np.arange(n + 1, dtype=np.int64)
        xs = x0 + (2 * i * dx + n) // (2 * n)
        ys = y0 + (2 * i * dy + n) // (2 * n)
        _paint(img, ys, xs, value)
        return
    r = thickness / 2.0
    h, w = img.shape[:2]
    bx0, bx1 = max(0, int(math.floor(min(x0, x1) - r))), min(w - 1, int(math.ceil(max(x0, x1) + r)))
    by0, by1 = max(0, int(math.floor(min(y0, y1) - r))), min(h - 1, int(math.ceil(max(y0, y1) + r)))
    if bx0 > bx1 or by0 > by1:
        return
    X = np.arange(bx0, bx1 + 1, dtype=np.float64)[None, :] - x0
    Y = np.arange(by0, by1 + 1, dtype=np.float64)[:, None] - y0
    L2 = float(dx * dx + dy * dy)
    if L2 == 0:
        t = np.zeros((1, 1))
    else:
        t = np.clip((X * dx + Y * dy) / L2, 0.0, 1.0)
    ex, ey = X - t * dx, Y - t * dy
    _paint_box(img, bx0, by0, bx1, by1, ex * ex + ey * ey <= r * r, value)


def polyline(img: np.ndarray, points, value, thickness: int = 1, closed: bool = False) -> None:
    """Consecutive segments through ``points`` (and back to the first when ``closed``)."""
    pts = int_points(points)
    if len(pts) == 1:
        line(img, pts[0], pts[0], value, thickness)
    ends = len(pts) if closed and len(pts) > 2 else len(pts) - 1
    for i in range(ends):
        line(img, pts[i], pts[(i + 1) % len(pts)], value, thickness)


def fill_poly(img: np.ndarray, points, value) -> None:
    """A filled polygon: the pixel centres inside it (even-odd rule, exact integer
    crossings) plus its one-pixel outline."""
    pts = int_points(points)
    n = len(pts)
    if n == 0:
        return
    h = img.shape[0]
    xa, ya = pts[:, 0], pts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    rows, nums, dens = [], [], []
    for i in range(n):
        y0, y1 = int(ya[i]), int(yb[i])
        if y0 == y1:
            continue
        lo, hi = (y0, y1) if y0 < y1 else (y1, y0)
        lo, hi = max(lo, 0), min(hi, h)  # rows lo .. hi-1: half-open, so shared vertices count once
        if lo >= hi:
            continue
        y = np.arange(lo, hi, dtype=np.int64)
        den = y1 - y0
        num = int(xa[i]) * den + (y - y0) * (int(xb[i]) - int(xa[i]))
        if den < 0:
            num, den = -num, -den
        rows.append(y)
        nums.append(num)
        dens.append(np.full(y.shape, den, np.int64))
    if rows:
        y = np.concatenate(rows)
        num, den = np.concatenate(nums), np.concatenate(dens)
        order = np.lexsort((num / den, y))
        y, num, den = y[order], num[order], den[order]
        # crossings come in pairs per row (each row crosses a closed polygon an even number of times)
        left = -((-num[0::2]) // den[0::2])   # ceil
        right = num[1::2] // den[1::2]        # floor
        yr = y[0::2]
        w = img.shape[1]
        left, right = np.maximum(left, 0), np.minimum(right, w - 1)
        for r, a, b in zip(yr.tolist(), left.tolist(), right.tolist()):
            if a <= b:
                if img.ndim == 3:
                    img[r, a:b + 1] = np.asarray(value, dtype=img.dtype).reshape(-1)[: img.shape[2]]
                else:
                    img[r, a:b + 1] = value
    polyline(img, pts, value, 1, closed=True)


def rectangle(img: np.ndarray, p1, p2, value, thickness: int = 1) -> None:
    """An axis-aligned rectangle with corners ``p1``, ``p2`` (inclusive): filled when
    ``thickness`` < 0, else its outline ``thickness`` pixels wide (centred on the edges)."""
    x0, x1 = sorted((int(p1[0]), int(p2[0])))
    y0, y1 = sorted((int(p1[1]), int(p2[1])))
    h, w = img.shape[:2]
    if thickness < 0:
        xs, xe, ys, ye = max(x0, 0), min(x1, w - 1), max(y0, 0), min(y1, h - 1)
        if xs <= xe and ys <= ye:
            if img.ndim == 3:
                img[ys:ye + 1, xs:xe + 1] = np.asarray(value, dtype=img.dtype).reshape(-1)[: img.shape[2]]
            else:
                img[ys:ye + 1, xs:xe + 1] = value
        return
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    polyline(img, corners, value, thickness, closed=True)


def circle(img: np.ndarray, centre, radius: int, value, thickness: int = 1) -> None:
    """A disc (``thickness`` < 0) or a ring ``thickness`` pixels wide centred on ``radius``."""
    cx, cy, r = int(centre[0]), int(centre[1]), int(radius)
    half = 0.5 * max(1, thickness)
    outer = r if thickness < 0 else r + half
    h, w = img.shape[:2]
    bx0, bx1 = max(0, int(math.floor(cx - outer))), min(w - 1, int(math.ceil(cx + outer)))
    by0, by1 = max(0, int(math.floor(cy - outer))), min(h - 1, int(math.ceil(cy + outer)))
    if bx0 > bx1 or by0 > by1:
        return
    X = np.arange(bx0, bx1 + 1, dtype=np.float64)[None, :] - cx
    Y = np.arange(by0, by1 + 1, dtype=np.float64)[:, None] - cy
    d2 = X * X + Y * Y
    if thickness < 0:
        inside = d2 <= r * r
    else:
        inner = max(0.0, r - half)
        inside = (d2 >= inner * inner) & (d2 <= outer * outer)
    _paint_box(img, bx0, by0, bx1, by1, inside, value)


def ellipse(img: np.ndarray, centre, axes, value) -> None:
    """A filled axis-aligned ellipse with semi-axes ``axes`` = (a, b) (integers)."""
    cx, cy = int(centre[0]), int(centre[1])
    a, b = max(1, int(axes[0])), max(1, int(axes[1]))
    h, w = img.shape[:2]
    bx0, bx1, by0, by1 = max(0, cx - a), min(w - 1, cx + a), max(0, cy - b), min(h - 1, cy + b)
    if bx0 > bx1 or by0 > by1:
        return
    X = np.arange(bx0, bx1 + 1, dtype=np.int64)[None, :] - cx
    Y = np.arange(by0, by1 + 1, dtype=np.int64)[:, None] - cy
    _paint_box(img, bx0, by0, bx1, by1, X * X * (b * b) + Y * Y * (a * a) <= (a * a) * (b * b), value)


# -- binary morphology and regions ----------------------------------------------------------

def _shift_or(out: np.ndarray, m: np.ndarray, dy: int, dx: int) -> None:
    """``out |= m`` shifted by (dy, dx) (pixels moved outside are dropped)."""
    h, w = m.shape
    if abs(dy) >= h or abs(dx) >= w:
        return
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] |= m[ys, xs]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by the (2r+1)-pixel square (outside the array counts as empty)."""
    m = np.asarray(mask).astype(bool)
    rows = m.copy()
    for s in range(1, radius + 1):
        _shift_or(rows, m, s, 0)
        _shift_or(rows, m, -s, 0)
    out = rows.copy()
    for s in range(1, radius + 1):
        _shift_or(out, rows, 0, s)
        _shift_or(out, rows, 0, -s)
    return out


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion by the (2r+1)-pixel square (outside the array counts as full)."""
    return ~dilate(~np.asarray(mask).astype(bool), radius)


def sweep(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The mask swept along the integer segment (0, 0) → (dx, dy): an array padded by
    ``|dy|`` rows and ``|dx|`` columns on each side, the mask at its centre."""
    m = np.asarray(mask).astype(bool)
    px, py = abs(dx), abs(dy)
    padded = np.zeros((m.shape[0] + 2 * py, m.shape[1] + 2 * px), bool)
    padded[py:py + m.shape[0], px:px + m.shape[1]] = m
    out = padded.copy()
    steps = np.zeros((py + 1, px + 1), np.uint8)
    line(steps, (0, 0), (px, py), 1, 1)
    for oy, ox in zip(*np.nonzero(steps)):
        _shift_or(out, padded, int(oy) * (1 if dy >= 0 else -1), int(ox) * (1 if dx >= 0 else -1))
    return out


def count_components(mask: np.ndarray) -> int:
    """Number of 8-connected regions of a binary mask (row runs joined by union-find)."""
    m = np.asarray(mask).astype(bool)
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[tuple[int, int, int]] = []
    for row in m:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.view(np.uint8), [0])).astype(np.int8)))
        cur = []
        j = 0
        for s, e in zip(edges[0::2].tolist(), edges[1::2].tolist()):  # run [s, e)
            k = len(parent)
            parent.append(k)
            while j < len(prev) and prev[j][1] < s:  # previous runs ending before s - 1
                j += 1
            t = j
            while t < len(prev) and prev[t][0] <= e:  # overlaps [s - 1, e] (8-connectivity)
                a, b = find(prev[t][2]), find(k)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                t += 1
            cur.append((s, e, k))
        prev = cur
    return sum(1 for i in range(len(parent)) if find(i) == i)


def bounding_rect(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the mask's nonzero pixels; all zero for an empty mask."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def distance_transform(mask: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Exact Euclidean distance (float64) from each nonzero pixel to the nearest zero pixel
    of the array (0 on zero pixels; outside the array does not count). ``limit`` caps the
    result (the computation stops once every distance below it is known). With no zero
    pixel every distance is ``h + w`` (or ``limit``)."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    big = h + w
    if m.all():
        return np.full((h, w), float(big if limit is None else min(big, limit)))
    rows = np.arange(h, dtype=np.int64)[:, None]
    zero = ~m
    above = np.maximum.accumulate(np.where(zero, rows, -big), axis=0)
    below = np.minimum.accumulate(np.where(zero, rows, 2 * big)[::-1], axis=0)[::-1]
    g = np.minimum(np.minimum(rows - above, below - rows), big)
    g2 = g * g
    d2 = g2.copy()
    cap = None if limit is None else int(math.ceil(limit)) ** 2
    k = 1
    while k < w:
        worst = int(d2.max())
        if cap is not None:
            worst = min(worst, cap)
        if k * k >= worst:
            break
        kk = k * k
        np.minimum(d2[:, :-k], g2[:, k:] + kk, out=d2[:, :-k])
        np.minimum(d2[:, k:], g2[:, :-k] + kk, out=d2[:, k:])
        k += 1
    out = np.sqrt(d2.astype(np.float64))
    return out if limit is None else np.minimum(out, limit)


# -- resampling and warps ------------------------------------------------------------------

_CUBIC_A = -0.75


def _taps(n_out: int, n_in: int, kind: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Source indices and weights along one axis (pixel-centre alignment, edge replicated)."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    base = np.floor(src)
    t = src - base
    base = base.astype(np.int64)
    if kind == "linear":
        offsets, weights = (0, 1), [1.0 - t, t]
    else:
        A = _CUBIC_A
        u = 1.0 - t
        w0 = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A
        w1 = ((A + 2) * t - (A + 3)) * t * t + 1
        w2 = ((A + 2) * u - (A + 3)) * u * u + 1
        offsets, weights = (-1, 0, 1, 2), [w0, w1, w2, 1.0 - w0 - w1 - w2]
    return [np.clip(base + o, 0, n_in - 1) for o in offsets], weights


def _resample_axis(a: np.ndarray, n_out: int, axis: int, kind: str) -> np.ndarray:
    idx, wts = _taps(n_out, a.shape[axis], kind)
    shape = [1] * a.ndim
    shape[axis] = n_out
    out = None
    for i, wt in zip(idx, wts):
        term = np.take(a, i, axis=axis) * wt.reshape(shape)
        out = term if out is None else out + term
    return out


def resize(img: np.ndarray, width: int, height: int, kind: str = "linear") -> np.ndarray:
    """Resize a float image (2-D or H×W×C) to ``width`` × ``height``: ``"linear"`` or
    ``"cubic"`` (Keys, a = -0.75), separable, in float64; returns float32."""
    a = np.asarray(img, dtype=np.float64)
    out = _resample_axis(_resample_axis(a, height, 0, kind), width, 1, kind)
    return out.astype(np.float32)


def rotation_matrix(centre, angle_deg: float) -> np.ndarray:
    """2×3 map rotating by ``angle_deg`` (counter-clockwise on screen, y down) about ``centre``."""
    a = math.radians(angle_deg)
    al, be = math.cos(a), math.sin(a)
    cx, cy = float(centre[0]), float(centre[1])
    return np.array([[al, be, (1 - al) * cx - be * cy], [-be, al, be * cx + (1 - al) * cy]])


def apply_affine(M: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """Image of point (x, y) under the 2×3 map ``M`` (no BLAS)."""
    return (float(M[0, 0]) * x + float(M[0, 1]) * y + float(M[0, 2]),
            float(M[1, 0]) * x + float(M[1, 1]) * y + float(M[1, 2]))


def warp_affine(src: np.ndarray, M: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """``src`` mapped by the 2×3 map ``M`` (source → destination) onto a ``width`` ×
    ``height`` array. Nearest: source pixel nearest each destination centre, 0 outside;
    else bilinear with the edge replicated (float32 out)."""
    a, b, c = (float(v) for v in M[0])
    d, e, f = (float(v) for v in M[1])
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)
    X = np.arange(width, dtype=np.float64)[None, :]
    Y = np.arange(height, dtype=np.float64)[:, None]
    sx = ia * X + ib * Y + ic
    sy = id_ * X + ie * Y + if_
    h, w = src.shape[:2]
    if nearest:
        xi, yi = np.floor(sx + 0.5).astype(np.int64), np.floor(sy + 0.5).astype(np.int64)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out = np.zeros((height, width) + src.shape[2:], src.dtype)
        out[ok] = src[yi[ok], xi[ok]]
        return out
    x0, y0 = np.floor(sx), np.floor(sy)
    tx, ty = sx - x0, sy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    s = np.asarray(src, dtype=np.float64)
    if s.ndim == 3:
        tx, ty = tx[..., None], ty[..., None]
    top = s[ya, xa] * (1.0 - tx) + s[ya, xb] * tx
    bottom = s[yb, xa] * (1.0 - tx) + s[yb, xb] * tx
    return (top * (1.0 - ty) + bottom * ty).astype(np.float32)


def gaussian_blur_u8(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a uint8 image (kernel ``2*round(3σ)+1`` taps, edges
    mirrored without repeating the edge pixel), in float64, rounded half to even."""
    radius = max(1, int(round(3.0 * sigma)))
    k = [math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-radius, radius + 1)]
    total = 0.0
    for v in k:
        total += v
    k = [v / total for v in k]
    a = np.asarray(img, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (radius, radius)
        p = np.pad(a, pad, mode="reflect")
        n = a.shape[axis]
        acc = None
        for j, wt in enumerate(k):
            term = (p[j:j + n] if axis == 0 else p[:, j:j + n]) * wt
            acc = term if acc is None else acc + term
        a = acc
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def upsample_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A boolean mask resized to ``width`` × ``height`` by the centre rule: each output
    pixel takes the source pixel under its centre (exact integer arithmetic)."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    cols = ((2 * np.arange(width, dtype=np.int64) + 1) * w) // (2 * width)
    rows = ((2 * np.arange(height, dtype=np.int64) + 1) * h) // (2 * height)
    return m[rows[:, None], cols[None, :]]


__all__ = ["apply_affine", "bounding_rect", "circle", "cos", "count_components", "dilate", "distance_transform",
           "ellipse", "erode", "fill_poly", "gaussian_blur_u8", "int_points", "line", "norm_rows", "polyline",
           "rectangle", "resize", "rotation_matrix", "sin", "sweep", "upsample_mask", "warp_affine"]
