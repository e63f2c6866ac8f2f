"""Terrain, water and roads: the layers drawn over the whole image before any site."""

from __future__ import annotations

import math

import numpy as np

from ... import raster
from .canvas import CTX, HARD, _ipts, _noise1d, _rgb, _rot, _Scene, _smooth_noise, SOFT, WATER


_BIOMES = (
    (_rgb(92, 116, 66), _rgb(128, 134, 84)),    # temperate grassland
    (_rgb(170, 156, 120), _rgb(146, 136, 100)),  # dry plain
    (_rgb(72, 100, 56), _rgb(98, 120, 70)),      # lush green
    (_rgb(126, 128, 110), _rgb(104, 118, 84)),   # suburban mix
    (_rgb(150, 140, 94), _rgb(118, 126, 76)),    # savanna
)


def _terrain(sc: _Scene) -> None:
    """Two blended ground colours mottled at two scales (computed at quarter resolution,
    since they are smooth), fine texture, and scattered dark scrub."""
    rng = sc.rng
    base, alt = _BIOMES[int(rng.integers(len(_BIOMES)))]
    base = base * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    qh, qw = max(2, sc.H // 4), max(2, sc.W // 4)
    low = _smooth_noise(rng, qh, qw, cell=max(qw, qh) / 3)
    mid = _smooth_noise(rng, qh, qw, cell=6)
    t = np.clip(0.5 + 0.45 * low, 0, 1)[..., None]
    small = (base * (1 - t) + alt * t) * (1.0 + 0.07 * mid)[..., None]
    img = raster.resize(small, sc.W, sc.H, "linear")
    img *= (1.0 + 0.05 * sc.tex)[..., None]
    scrub = _smooth_noise(rng, sc.H, sc.W, cell=max(3.0, sc.u * 0.012))
    dark = scrub > rng.uniform(1.2, 1.8)
    img[dark] *= _rgb(0.62, 0.72, 0.6)
    sc.img = np.ascontiguousarray(img)  # _Scene._write relies on reshape() giving a view


def _coast(sc: _Scene) -> None:
    """Sea along one image side behind a wavy shoreline, with a beach and foam. Only the
    band that can hold sea or beach is computed."""
    rng = sc.rng
    side = int(rng.integers(4))  # sea on the 0 left, 1 right, 2 top, 3 bottom
    along, across = (sc.H, sc.W) if side < 2 else (sc.W, sc.H)
    depth = across * rng.uniform(0.2, 0.38)
    prof = depth + across * 0.05 * _noise1d(rng, along, 5) + across * 0.008 * _noise1d(rng, along, 40)
    prof = np.clip(prof, 2, across * 0.7).astype(np.float32)
    beach_w = max(2.0, sc.u * rng.uniform(0.006, 0.02))
    band = min(across, int(math.ceil(float(prof.max()) + beach_w)) + 2)
    # a: distance into the sea from the shoreline (negative on land), over the band only
    c = np.arange(band, dtype=np.float32)
    if side == 0:
        a, region = prof[:, None] - c[None, :], (slice(0, sc.H), slice(0, band))
    elif side == 1:
        a, region = prof[:, None] - c[None, ::-1], (slice(0, sc.H), slice(sc.W - band, sc.W))
    elif side == 2:
        a, region = prof[None, :] - c[:, None], (slice(0, band), slice(0, sc.W))
    else:
        a, region = prof[None, :] - c[::-1, None], (slice(sc.H - band, sc.H), slice(0, sc.W))
    sea = a > 0
    beach = (a <= 0) & (a > -beach_w)
    sc.paint_mask(beach, _rgb(196, 182, 146) * rng.uniform(0.9, 1.05), CTX, SOFT, tex=0.06, region=region)
    t = np.clip(a / (0.35 * depth + 1), 0, 1)[..., None]
    shallow, deep = _rgb(70, 120, 128), _rgb(22, 52, 78) * rng.uniform(0.85, 1.15)
    water = shallow * (1 - t) + deep * t
    foam = sea & (a < max(1.5, sc.u * 0.004))
    water[foam] = _rgb(190, 205, 205)
    sc.paint_mask(sea, water, CTX, WATER, tex=0.04, region=region)
    sc.coast = (side, prof)


def _coast_point(sc: _Scene, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Shoreline point at along-coordinate ``s`` and the unit vector pointing out to sea."""
    side, prof = sc.coast
    p = float(prof[int(np.clip(s, 0, len(prof) - 1))])
    if side == 0:
        return np.array([p, s]), np.array([-1.0, 0.0])
    if side == 1:
        return np.array([sc.W - 1 - p, s]), np.array([1.0, 0.0])
    if side == 2:
        return np.array([s, p]), np.array([0.0, -1.0])
    return np.array([s, sc.H - 1 - p]), np.array([0.0, 1.0])


def _edge_to_edge(sc: _Scene, rng: np.random.Generator, n: int = 160, bend: float = 0.12,
                  vertical: bool | None = None) -> np.ndarray:
    """A gently curving path between two opposite image edges (slightly beyond them)."""
    if vertical is None:
        vertical = bool(rng.random() < sc.H / (sc.W + sc.H))
    m = 0.05
    if vertical:
        a = np.array([rng.uniform(0.15, 0.85) * sc.W, -m * sc.H])
        b = np.array([rng.uniform(0.15, 0.85) * sc.W, (1 + m) * sc.H])
    else:
        a = np.array([-m * sc.W, rng.uniform(0.15, 0.85) * sc.H])
        b = np.array([(1 + m) * sc.W, rng.uniform(0.15, 0.85) * sc.H])
    t = np.linspace(0, 1, n)[:, None]
    d = b - a
    length = math.hypot(float(d[0]), float(d[1]))
    normal = np.array([-d[1], d[0]]) / length
    offset = bend * length * _noise1d(rng, n, 4) * np.sqrt(raster.sin(np.pi * t[:, 0]).clip(0, None))
    return a + t * d + offset[:, None] * normal


def _river(sc: _Scene, target: bool) -> None:
    """A meandering river across the image with sandy banks and a darker channel."""
    rng = sc.rng
    path = _edge_to_edge(sc, rng, n=120, bend=rng.uniform(0.08, 0.2))
    n = len(path)
    width = sc.u * rng.uniform(0.045, 0.09) * (1 + 0.25 * _noise1d(rng, n, 5))
    width = np.maximum(width, 6.0)
    bank = max(2.0, sc.u * 0.008)
    zone = np.zeros((sc.H, sc.W), np.uint8)
    river = np.zeros((sc.H, sc.W), np.uint8)
    channel = np.zeros((sc.H, sc.W), np.uint8)
    pts = np.round(path).astype(np.int32)
    for i in range(n - 1):
        p, q = tuple(int(v) for v in pts[i]), tuple(int(v) for v in pts[i + 1])
        w = float(width[i])
        raster.line(zone, p, q, 1, int(round(w + 2 * bank)))
        raster.line(river, p, q, 1, int(round(w)))
        raster.line(channel, p, q, 1, max(1, int(round(w * 0.45))))
    sea = sc.occ == WATER  # the river ends where it meets the sea
    zone = zone.astype(bool) & ~sea
    river = river.astype(bool) & ~sea
    tint = [_rgb(52, 92, 98), _rgb(62, 96, 84), _rgb(44, 78, 108)][int(rng.integers(3))] * rng.uniform(0.9, 1.1)
    sc.paint_mask(zone & ~river, _rgb(150, 140, 105), CTX, SOFT, tex=0.08)
    sc.paint_mask(river, tint, sc.code("river"), WATER, tex=0.04)
    core = channel.astype(bool) & river
    x, y, w, h = raster.bounding_rect(core)
    if w and h:
        sc.img[y:y + h, x:x + w][core[y:y + h, x:x + w]] *= 0.82
    sc.river_mask, sc.river_zone = river, zone
    sc.river_width = float(width.max() + 2 * bank)
    d = np.gradient(path, axis=0)
    sc.river_path, sc.river_tangent = path, d / raster.norm_rows(d)[:, None]
    sc.instances["river"] += 1


def _road_path(sc: _Scene, rng: np.random.Generator, w: int) -> np.ndarray:
    """An edge-to-edge road that crosses the river (if any) rather than running along it:
    a road nearly parallel to the river would otherwise become one long bridge."""
    for _ in range(8):
        path = _edge_to_edge(sc, rng, n=40, bend=rng.uniform(0.0, 0.1))
        if sc.river_zone is None:
            return path
        test = np.zeros((sc.H, sc.W), np.uint8)
        raster.polyline(test, path, 1, w)
        over = test.astype(bool) & sc.river_zone
        crossings = max(1, raster.count_components(over))
        if np.count_nonzero(over) <= crossings * (w + 2) * sc.river_width * 2.0:
            return path
    return path


def _roads(sc: _Scene, count: int, target: bool) -> None:
    """Roads from edge to edge (asphalt, verges, dashed centre lines). Where a road
    crosses the river it becomes a bridge when bridges belong in the image, otherwise it
    stops at the banks; roads always stop at the sea."""
    rng = sc.rng
    road = np.zeros((sc.H, sc.W), np.uint8)
    verge = np.zeros((sc.H, sc.W), np.uint8)
    dashes = np.zeros((sc.H, sc.W), np.uint8)
    bridge_wanted = "bridge" in sc.cats and sc.river_path is not None
    for k in range(count):
        if k == 0 and bridge_wanted:
            # cross the river near its middle, roughly at right angles
            i = int(rng.integers(len(sc.river_path) * 3 // 10, len(sc.river_path) * 7 // 10))
            q, tan = sc.river_path[i], sc.river_tangent[i]
            nrm = _rot(rng.uniform(-25, 25), np.array([-tan[1], tan[0]]))
            span = 2.0 * (sc.W + sc.H)
            t = np.linspace(-1, 1, 9)[:, None]
            path = q + t * span * nrm
        w = max(3, int(round(sc.u * rng.uniform(0.014, 0.03) * (1.3 if k == 0 else 1.0))))
        if not (k == 0 and bridge_wanted):
            path = _road_path(sc, rng, w)
        pts = _ipts(path)
        raster.polyline(verge, pts, 1, w + 2 * max(1, w // 5))
        raster.polyline(road, pts, 1, w)
        if w >= 9:  # a dashed centre line on wide roads
            seg = np.cumsum(np.r_[0, raster.norm_rows(np.diff(path, axis=0))])
            dash = max(4.0, w * 0.9)
            samples = np.arange(0, seg[-1], dash)
            xs, ys = np.interp(samples, seg, path[:, 0]), np.interp(samples, seg, path[:, 1])
            for j in range(0, len(samples) - 1, 2):
                raster.line(dashes, (int(xs[j]), int(ys[j])), (int(xs[j + 1]), int(ys[j + 1])), 1, max(1, w // 10))
    water = sc.occ == WATER
    road_b = road.astype(bool)
    if bridge_wanted:
        deck = raster.dilate(road, 1) & sc.river_zone
    else:
        deck = np.zeros_like(road_b)
    keep = ~water & ~deck
    asphalt = _rgb(96, 96, 98) * rng.uniform(0.85, 1.2)
    sc.paint_mask(verge.astype(bool) & ~road_b & keep, _rgb(160, 154, 138), CTX, SOFT, tex=0.08)
    road_px = road_b & keep
    sc.paint_mask(road_px, asphalt, sc.code("road"), sc.occ_for("road", target), tex=0.05)
    sc.paint_mask(dashes.astype(bool) & road_px, _rgb(225, 222, 205), sc.code("road"), None, tex=0.02)
    sc.instances["road"] += count
    if deck.any():
        _bridges(sc, deck, target_h=max(2.0, sc.u * 0.012))


def _bridges(sc: _Scene, deck: np.ndarray, target_h: float) -> None:
    """Concrete decks with light railings where roads cross the river, shading the water."""
    x, y, w, h = raster.bounding_rect(deck)
    sub = deck[y:y + h, x:x + w]
    sc.cast_shadow(sub, x, y, target_h)
    sc.paint_mask(deck, _rgb(178, 174, 164), sc.code("bridge"), HARD, tex=0.04)
    rail = deck & ~raster.erode(deck, 1)
    sc.paint_mask(rail, _rgb(215, 212, 205), sc.code("bridge"), None, tex=0.02)
    sc.instances["bridge"] += raster.count_components(deck)
