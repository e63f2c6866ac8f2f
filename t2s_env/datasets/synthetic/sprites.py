"""Sprites: objects drawn axis-aligned in their own small canvas, later rotated and placed."""

from __future__ import annotations

import math

import numpy as np

from ... import raster

from .catalogue import LABEL_IDS
from .canvas import _canvas, CTX, _fill, _ipts, _rgb, _rot, _Scene, _smooth_noise


def _blob_polygon(rng: np.random.Generator, rx: float, ry: float, rough: float, harmonics: int, n: int = 64) -> np.ndarray:
    """A closed irregular outline around the origin (sum of random radial harmonics)."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, harmonics + 1):
        r += rough / k * rng.uniform(0.3, 1.0) * raster.cos(k * th + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.45, None)
    return np.stack([rx * r * raster.cos(th), ry * r * raster.sin(th)], axis=1)


def _lake_sprite(sc: _Scene, rng: np.random.Generator, r: float):
    rx, ry = r, r * rng.uniform(0.55, 1.0)
    poly = _blob_polygon(rng, rx, ry, rough=0.35, harmonics=5)
    ring = max(2.0, r * 0.06)
    size = 2 * (max(rx, ry) * 1.6 + ring + 2)
    rgb, lab = _canvas(size, size)
    c = np.array([size / 2, size / 2])
    shore = poly * (1 + ring / r) + c
    _fill(rgb, lab, shore, [_rgb(120, 118, 84), _rgb(74, 96, 58)][int(rng.integers(2))], CTX)
    water = np.zeros(lab.shape, np.uint8)
    raster.fill_poly(water, _ipts(poly + c), 1)
    depth = raster.distance_transform(water, limit=0.35 * r)
    t = np.clip(depth / (0.35 * r), 0, 1)[..., None]
    shallow, deep = _rgb(72, 112, 104), _rgb(24, 56, 72) * rng.uniform(0.85, 1.15)
    wm = water.astype(bool)
    rgb[wm] = (shallow * (1 - t) + deep * t)[wm]
    lab[wm] = LABEL_IDS["lake"]
    return rgb, lab


def _forest_sprite(sc: _Scene, rng: np.random.Generator, r: float):
    rx, ry = r, r * rng.uniform(0.5, 1.0)
    poly = _blob_polygon(rng, rx, ry, rough=0.6, harmonics=9, n=96)
    size = 2 * (max(rx, ry) * 1.8 + 2)
    rgb, lab = _canvas(size, size)
    raster.fill_poly(lab, _ipts(poly + size / 2), LABEL_IDS["forest"])
    crown = max(2.0, sc.u * rng.uniform(0.008, 0.016))
    h, w = lab.shape
    crowns = _smooth_noise(rng, h, w, cell=crown)
    tone = _smooth_noise(rng, h, w, cell=crown * 8)
    green = [_rgb(44, 74, 42), _rgb(52, 82, 44), _rgb(38, 64, 48), _rgb(64, 80, 44)][int(rng.integers(4))]
    rgb[:] = green * (1.0 + 0.22 * crowns + 0.1 * tone)[..., None]
    gaps = crowns < -1.3
    rgb[gaps] *= 0.6
    return rgb, lab


def _field_sprite(rng: np.random.Generator, w: float, h: float, row_period: float):
    """A crop field: parallel rows (a sine pattern) over a palette colour."""
    palette = (_rgb(96, 136, 62), _rgb(124, 152, 72), _rgb(198, 178, 112), _rgb(132, 102, 76),
               _rgb(172, 160, 118), _rgb(150, 162, 90))
    base = palette[int(rng.integers(len(palette)))] * rng.uniform(0.92, 1.08)
    rgb, lab = _canvas(w, h, base)
    hh, ww = lab.shape
    axis = np.arange(ww if rng.random() < 0.5 else hh, dtype=np.float32)
    rows = raster.sin(2 * np.pi * axis / row_period + rng.uniform(0, 6.3))
    amp = rng.uniform(0.05, 0.14)
    if len(axis) == ww:
        rgb *= (1 + amp * rows)[None, :, None]
    else:
        rgb *= (1 + amp * rows)[:, None, None]
    rgb *= (1 + 0.06 * _smooth_noise(rng, hh, ww, cell=max(8.0, min(ww, hh) / 3)))[..., None]
    lab[:] = LABEL_IDS["farmland"]
    return rgb, lab


_ROOF_COLOURS = (_rgb(168, 84, 64), _rgb(140, 72, 58), _rgb(152, 150, 146), _rgb(86, 86, 92),
                 _rgb(214, 212, 206), _rgb(112, 126, 142), _rgb(190, 176, 150))


def _building_sprite(sc: _Scene, rng: np.random.Generator, w: float, h: float, angle: float):
    """A roof seen from above: gabled (two halves lit differently by the sun) or flat
    (parapet outline and a few rooftop units)."""
    colour = _ROOF_COLOURS[int(rng.integers(len(_ROOF_COLOURS)))] * rng.uniform(0.9, 1.1)
    rgb, lab = _canvas(w, h, colour)
    lab[:] = LABEL_IDS["building"]
    hh, ww = lab.shape
    if rng.random() < 0.55 and hh >= 4:
        # gable: the ridge runs along the long (x) side; each half faces +-y
        light = -sc.sun
        face = _rot(angle, np.array([0.0, -1.0]))
        k = 0.22 * float(face[0] * light[0] + face[1] * light[1])
        rgb[: hh // 2] *= 1 + k
        rgb[hh // 2:] *= 1 - k
        rgb[hh // 2 - (hh % 2 == 0): hh // 2 + 1] *= 1.08
    else:
        edge = max(1, int(round(min(ww, hh) * 0.08)))
        rgb[:edge] *= 0.85
        rgb[-edge:] *= 0.85
        rgb[:, :edge] *= 0.85
        rgb[:, -edge:] *= 0.85
        for _ in range(int(rng.integers(0, 4))):
            s = max(1, int(min(ww, hh) * rng.uniform(0.1, 0.2)))
            x, y = int(rng.integers(edge, max(edge + 1, ww - s - edge))), int(rng.integers(edge, max(edge + 1, hh - s - edge)))
            rgb[y:y + s, x:x + s] = _rgb(200, 200, 196)
    return rgb, lab


def _tank_sprite(sc: _Scene, rng: np.random.Generator, r: float):
    """A cylindrical tank from above: a bright disc shaded toward the sun; floating-roof
    tanks show a recessed inner roof with the rim's crescent shadow."""
    size = int(math.ceil(2 * r)) + 3
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - c, yy - c
    dist = np.sqrt(dx * dx + dy * dy)
    disc = dist <= r
    light = -sc.sun
    base = [_rgb(226, 226, 222), _rgb(206, 208, 204), _rgb(196, 204, 190)][int(rng.integers(3))]
    shade = 1 + 0.12 * (dx * light[0] + dy * light[1]) / max(r, 1)
    rgb = base * shade[..., None]
    if rng.random() < 0.6 and r >= 5:
        rin = r * 0.84
        inner = dist <= rin
        rgb[inner] *= 0.86
        depth = r * 0.25
        sx, sy = dx + depth * sc.sun[0], dy + depth * sc.sun[1]
        crescent = inner & (sx * sx + sy * sy > rin * rin)
        rgb[crescent] *= 0.6
    lab = np.where(disc, LABEL_IDS["storage_tank"], 0).astype(np.uint8)
    return rgb.astype(np.float32), lab


def _plane_sprite(rng: np.random.Generator, L: float):
    """An airliner from above, nose toward +x: fuselage, swept wings, tailplane, engines."""
    span = L * rng.uniform(0.85, 1.02)
    rgb, lab = _canvas(L + 4, span + 4)
    cy = (lab.shape[0] - 1) / 2
    x0 = 2.0
    code = LABEL_IDS["airplane"]
    body, wing = _rgb(236, 236, 236), _rgb(206, 208, 212) * rng.uniform(0.95, 1.05)
    fw = max(1.5, 0.055 * L)
    for sgn in (-1, 1):  # wings and tailplane
        _fill(rgb, lab, [(x0 + 0.62 * L, cy + sgn * fw * 0.8), (x0 + 0.36 * L, cy + sgn * span / 2),
                         (x0 + 0.28 * L, cy + sgn * span / 2), (x0 + 0.42 * L, cy + sgn * fw * 0.8)], wing, code)
        _fill(rgb, lab, [(x0 + 0.16 * L, cy + sgn * fw * 0.6), (x0 + 0.06 * L, cy + sgn * 0.19 * span),
                         (x0 + 0.02 * L, cy + sgn * 0.19 * span), (x0 + 0.06 * L, cy + sgn * fw * 0.6)], wing, code)
        ex, ey = x0 + 0.52 * L, cy + sgn * 0.17 * span
        raster.ellipse(rgb, (int(round(ex)), int(round(ey))), (max(1, int(0.05 * L)), max(1, int(0.022 * L))), (150.0, 152.0, 156.0))
        raster.ellipse(lab, (int(round(ex)), int(round(ey))), (max(1, int(0.05 * L)), max(1, int(0.022 * L))), code)
    # fuselage: tapered tail, straight body, rounded nose
    _fill(rgb, lab, [(x0, cy - fw * 0.3), (x0 + 0.12 * L, cy - fw), (x0 + 0.9 * L, cy - fw),
                     (x0 + L, cy), (x0 + 0.9 * L, cy + fw), (x0 + 0.12 * L, cy + fw), (x0, cy + fw * 0.3)], body, code)
    livery = [_rgb(180, 40, 40), _rgb(40, 70, 160), _rgb(230, 150, 40), _rgb(60, 60, 64)][int(rng.integers(4))]
    raster.line(rgb, (int(x0), int(round(cy))), (int(x0 + 0.14 * L), int(round(cy))), [float(v) for v in livery], max(1, int(fw * 0.6)))
    return rgb, lab


def _ship_sprite(rng: np.random.Generator, L: float):
    """A ship from above, bow toward +x: hull, deck (containers, tanker pipe or plain),
    white superstructure near the stern."""
    beam = max(3.0, L * rng.uniform(0.17, 0.24))
    rgb, lab = _canvas(L + 4, beam + 4)
    cy = (lab.shape[0] - 1) / 2
    x0 = 2.0
    code = LABEL_IDS["ship"]
    kind = int(rng.integers(3))
    hull = [_rgb(60, 60, 66), _rgb(150, 46, 40), _rgb(40, 56, 96), _rgb(230, 230, 230)][int(rng.integers(4)) if kind else 3]
    outline = [(x0, cy - beam / 2), (x0 + 0.75 * L, cy - beam / 2), (x0 + L, cy),
               (x0 + 0.75 * L, cy + beam / 2), (x0, cy + beam / 2)]
    _fill(rgb, lab, outline, hull, code)
    inset = max(1.0, beam * 0.14)
    deck = [(x0 + inset, cy - beam / 2 + inset), (x0 + 0.74 * L, cy - beam / 2 + inset), (x0 + L - 2.5 * inset, cy),
            (x0 + 0.74 * L, cy + beam / 2 - inset), (x0 + inset, cy + beam / 2 - inset)]
    if kind == 0:  # small white boat with a cabin
        _fill(rgb, lab, deck, _rgb(205, 200, 190), code)
        raster.rectangle(rgb, (int(x0 + 0.3 * L), int(cy - beam * 0.25)), (int(x0 + 0.55 * L), int(cy + beam * 0.25)), (245.0, 245.0, 245.0), -1)
    else:
        deck_col = [_rgb(120, 112, 100), _rgb(150, 60, 50), _rgb(80, 110, 80)][int(rng.integers(3))]
        _fill(rgb, lab, deck, deck_col, code)
        if kind == 1:  # container stacks
            bay = max(2, int(L * 0.07))
            for bx in range(int(x0 + 0.25 * L), int(x0 + 0.78 * L) - bay, bay + 1):
                col = [(180.0, 60.0, 50.0), (60.0, 100.0, 160.0), (200.0, 170.0, 60.0), (90.0, 140.0, 90.0)][int(rng.integers(4))]
                raster.rectangle(rgb, (bx, int(cy - beam * 0.32)), (bx + bay - 1, int(cy + beam * 0.32)), col, -1)
        else:  # tanker: a pipe line along the deck
            raster.line(rgb, (int(x0 + 0.22 * L), int(round(cy))), (int(x0 + 0.85 * L), int(round(cy))), (210.0, 200.0, 180.0), max(1, int(beam * 0.1)))
        raster.rectangle(rgb, (int(x0 + 0.04 * L), int(cy - beam * 0.38)), (int(x0 + 0.2 * L), int(cy + beam * 0.38)), (240.0, 240.0, 236.0), -1)
    return rgb, lab


def _pier_sprite(rng: np.random.Generator, length: float, width: float, t_head: bool):
    """A pier along +x from its root at x=0, optionally with a T-shaped head."""
    head = width * rng.uniform(2.0, 3.5) if t_head else width
    rgb, lab = _canvas(length + 2, head + 2)
    cy = (lab.shape[0] - 1) / 2
    colour = [_rgb(168, 164, 154), _rgb(136, 112, 84), _rgb(150, 146, 140)][int(rng.integers(3))]
    code = LABEL_IDS["harbor"]
    _fill(rgb, lab, [(0, cy - width / 2), (length, cy - width / 2), (length, cy + width / 2), (0, cy + width / 2)], colour, code)
    if t_head:
        _fill(rgb, lab, [(length - width, cy - head / 2), (length, cy - head / 2), (length, cy + head / 2),
                         (length - width, cy + head / 2)], colour, code)
    if width >= 5:  # bollards along the edges
        for x in np.arange(width, length - width, max(4.0, width * 1.5)):
            for yy in (cy - width / 2 + 1, cy + width / 2 - 1):
                rgb[int(round(yy)), int(round(x))] = (60.0, 60.0, 60.0)
    return rgb, lab


def _runway_sprite(rng: np.random.Generator, L: float, w: float, dark: bool):
    """A runway along +x: edge lines, threshold stripes, a dashed centre line."""
    rgb, lab = _canvas(L, w, _rgb(78, 78, 80) if dark else _rgb(160, 158, 152))
    lab[:] = LABEL_IDS["runway"]
    hh, ww = lab.shape
    paint = (236.0, 236.0, 232.0)
    t = max(1, int(round(w * 0.03)))
    rgb[t:2 * t] = paint
    rgb[hh - 2 * t: hh - t] = paint
    cy = (hh - 1) / 2
    dash, gap = w * 1.2, w * 0.9
    x = w * 2.2
    while x + dash < ww - w * 2.2:
        raster.rectangle(rgb, (int(x), int(round(cy - t / 2))), (int(x + dash), int(round(cy + t / 2))), paint, -1)
        x += dash + gap
    stripes = 8
    sw = max(1, int(round(w * 0.05)))
    for end in (0, 1):
        xa = w * 0.25 if end == 0 else ww - w * 0.25 - w * 1.4
        for k in range(stripes):
            yk = 3 * t + (k + 0.5) * (hh - 6 * t) / stripes
            if abs(yk - cy) < sw * 1.5:
                continue
            raster.rectangle(rgb, (int(xa), int(yk - sw / 2)), (int(xa + w * 1.4), int(yk + sw / 2)), paint, -1)
    # tyre marks in the touchdown zones
    for end in (0, 1):
        xa = int(w * 2) if end == 0 else int(ww - w * 6)
        rgb[int(hh * 0.3): int(hh * 0.7), xa: xa + int(w * 4)] *= 0.8
    return rgb, lab


def _apron_sprite(rng: np.random.Generator, w: float, h: float):
    """Concrete apron with slab joints and yellow stand lines (context, no category)."""
    rgb, lab = _canvas(w, h, _rgb(176, 175, 170) * rng.uniform(0.92, 1.05))
    lab[:] = CTX
    hh, ww = lab.shape
    slab = max(6, int(min(ww, hh) / 5))
    rgb[::slab] *= 0.93
    rgb[:, ::slab] *= 0.93
    return rgb, lab


def _sports_sprite(rng: np.random.Generator, L: float):
    """A football pitch (mown stripes, white lines), sometimes inside a running track."""
    code = LABEL_IDS["sports_field"]
    white = (238.0, 238.0, 234.0)
    grass = _rgb(74, 136, 64) * rng.uniform(0.9, 1.1)
    if rng.random() < 0.5:  # athletics track around the pitch (a stadium shape)
        W = L * 0.56
        R = W / 2
        a = L / 2 - R
        rgb, lab = _canvas(L + 2, W + 2)
        hh, ww = lab.shape
        yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
        cx, cy = (ww - 1) / 2, (hh - 1) / 2
        dxs = np.maximum(np.abs(xx - cx) - a, 0)
        dist = np.sqrt(dxs ** 2 + (yy - cy) ** 2)
        tw = R * 0.22
        track = [_rgb(168, 78, 60), _rgb(60, 104, 146), _rgb(80, 120, 80)][int(rng.integers(3))]
        outer = dist <= R
        inner = dist <= R - tw
        rgb[outer] = track
        rgb[inner] = grass
        lanes = max(3, int(tw / 3))
        lane_px = tw / lanes
        line = outer & ~inner & (np.mod(dist - (R - tw), lane_px) < 1.0)
        rgb[line] = white
        lab[outer] = code
        half_l, half_w = a + (R - tw) * 0.5, (R - tw) * 0.8
        stripes = np.floor((xx - cx) / max(2.0, half_l / 5)).astype(int) % 2 == 0
        rgb[inner & stripes] *= 1.07
        lw = max(1, int(L / 160))
        raster.rectangle(rgb, (int(cx - half_l), int(cy - half_w)), (int(cx + half_l), int(cy + half_w)), white, lw)
        raster.line(rgb, (int(cx), int(cy - half_w)), (int(cx), int(cy + half_w)), white, lw)
        raster.circle(rgb, (int(cx), int(cy)), max(2, int(half_w * 0.3)), white, lw)
        return rgb, lab
    W = L * 0.65
    rgb, lab = _canvas(L, W, grass)
    lab[:] = code
    hh, ww = lab.shape
    band = max(2, ww // 12)
    for x in range(0, ww, 2 * band):
        rgb[:, x:x + band] *= 1.08
    m = max(2, int(L * 0.04))
    lw = max(1, int(L / 160))
    cx, cy = ww // 2, hh // 2
    raster.rectangle(rgb, (m, m), (ww - 1 - m, hh - 1 - m), white, lw)
    raster.line(rgb, (cx, m), (cx, hh - 1 - m), white, lw)
    raster.circle(rgb, (cx, cy), max(2, int(L * 0.087)), white, lw)
    bd, bw = int(L * 0.157), int(W * 0.59 / 2)
    for x_edge, sgn in ((m, 1), (ww - 1 - m, -1)):
        raster.rectangle(rgb, (x_edge, cy - bw), (x_edge + sgn * bd, cy + bw), white, lw)
    return rgb, lab


def _tennis_sprite(rng: np.random.Generator, Lc: float, courts: int):
    """``courts`` tennis courts side by side, each with its run-off and white lines."""
    code = LABEL_IDS["tennis_court"]
    surface, runoff = [(_rgb(62, 132, 86), _rgb(92, 120, 82)), (_rgb(54, 98, 154), _rgb(70, 128, 90)),
                       (_rgb(186, 96, 64), _rgb(170, 110, 78))][int(rng.integers(3))]
    Wc = Lc * 0.4615
    cell_w, cell_h = Lc * 1.5, Wc * 1.6
    rgb, lab = _canvas(cell_w, cell_h * courts, runoff)
    lab[:] = code
    white = (240.0, 240.0, 240.0)
    for k in range(courts):
        ox, oy = (cell_w - Lc) / 2, k * cell_h + (cell_h - Wc) / 2
        x1, y1, x2, y2 = int(ox), int(oy), int(ox + Lc), int(oy + Wc)
        raster.rectangle(rgb, (x1, y1), (x2, y2), [float(v) for v in surface], -1)
        raster.rectangle(rgb, (x1, y1), (x2, y2), white, 1)
        inset = max(1, int(round(Wc * 0.125)))
        raster.line(rgb, (x1, y1 + inset), (x2, y1 + inset), white, 1)
        raster.line(rgb, (x1, y2 - inset), (x2, y2 - inset), white, 1)
        cx = (x1 + x2) // 2
        sl = int(Lc * 0.27)
        raster.line(rgb, (cx - sl, y1 + inset), (cx - sl, y2 - inset), white, 1)
        raster.line(rgb, (cx + sl, y1 + inset), (cx + sl, y2 - inset), white, 1)
        raster.line(rgb, (cx - sl, (y1 + y2) // 2), (cx + sl, (y1 + y2) // 2), white, 1)
        raster.line(rgb, (cx, y1 - 1), (cx, y2 + 1), (40.0, 40.0, 40.0), 1)
        if k > 0:  # fence between neighbouring courts
            raster.line(rgb, (0, int(k * cell_h)), (rgb.shape[1] - 1, int(k * cell_h)), (70.0, 80.0, 70.0), 1)
    return rgb, lab


def _parking_sprite(rng: np.random.Generator, w: float, h: float, bay: float):
    """An asphalt lot with double rows of bays between aisles, partly filled with cars."""
    rgb, lab = _canvas(w, h, _rgb(108, 108, 110) * rng.uniform(0.88, 1.15))
    lab[:] = LABEL_IDS["parking_lot"]
    hh, ww = lab.shape
    depth, width = bay, max(3.0, bay * 0.5)
    aisle = bay * 1.2
    fill = rng.uniform(0.3, 0.9)
    cars = ((230.0, 230.0, 230.0), (190.0, 192.0, 196.0), (40.0, 40.0, 44.0), (160.0, 40.0, 36.0),
            (44.0, 70.0, 140.0), (120.0, 120.0, 126.0))
    y = aisle * 0.6
    while y + depth <= hh - aisle * 0.3:
        x = width * 0.5
        raster.line(rgb, (int(x), int(y)), (int(ww - width * 0.5), int(y)), (220.0, 220.0, 214.0), 1)
        while x + width <= ww - width * 0.5:
            raster.line(rgb, (int(x), int(y)), (int(x), int(y + depth)), (220.0, 220.0, 214.0), 1)
            if rng.random() < fill:
                cl = cars[int(rng.integers(len(cars)))]
                cx1, cx2 = int(x + width * 0.2), int(x + width * 0.8)
                cy1, cy2 = int(y + depth * 0.12), int(y + depth * 0.88)
                raster.rectangle(rgb, (cx1, cy1), (cx2, cy2), cl, -1)
                wy = cy1 + (cy2 - cy1) // 3
                raster.line(rgb, (cx1, wy), (cx2, wy), (30.0, 34.0, 40.0), 1)
            x += width
        y += depth + (aisle if int(y / (depth + 1)) % 2 else 0.0)
    return rgb, lab


def _solar_sprite(rng: np.random.Generator, w: float, h: float, row: float):
    """Rows of dark panels with light seams; the ground between rows stays visible."""
    rgb, lab = _canvas(w, h, _rgb(34, 44, 76) * rng.uniform(0.85, 1.15))
    hh, ww = lab.shape
    gap = max(2.0, row * rng.uniform(0.5, 1.0))
    code = LABEL_IDS["solar_farm"]
    y = 0.0
    while y + row <= hh:
        x1 = int(rng.uniform(0, 0.06) * ww)
        x2 = int(ww - 1 - rng.uniform(0, 0.06) * ww)
        lab[int(y): int(y + row), x1:x2] = code
        rgb[int(y), x1:x2] *= 1.5  # the sunlit upper edge
        y += row + gap
    seam = max(3, int(row * 1.4))
    rgb[:, ::seam] *= 1.35
    return rgb, lab


def _greenhouse_sprite(rng: np.random.Generator, length: float, width: float):
    """A long translucent roof with ribs across it and an arched brightness profile."""
    rgb, lab = _canvas(length, width, _rgb(212, 220, 222) * rng.uniform(0.92, 1.04))
    lab[:] = LABEL_IDS["greenhouse"]
    hh, ww = lab.shape
    arch = 1 + 0.1 * raster.cos(np.linspace(-np.pi / 2, np.pi / 2, hh) + rng.uniform(-0.5, 0.5))
    rgb *= arch[:, None, None].astype(np.float32)
    rgb[:, ::max(3, int(width / 3))] *= 0.88
    rgb[[0, -1]] *= 0.85
    rgb[:, [0, -1]] *= 0.85
    return rgb, lab


def _pool_sprite(rng: np.random.Generator, w: float, h: float):
    """A pool: light coping around turquoise water that deepens toward one end."""
    rgb, lab = _canvas(w, h)
    hh, ww = lab.shape
    code = LABEL_IDS["swimming_pool"]
    coping = (222.0, 218.0, 204.0)
    if rng.random() < 0.25:
        raster.ellipse(rgb, (ww // 2, hh // 2), (ww // 2, hh // 2), coping)
        raster.ellipse(lab, (ww // 2, hh // 2), (ww // 2, hh // 2), code)
    else:
        rgb[:] = coping
        lab[:] = code
    c = max(1, int(round(min(ww, hh) * 0.12)))
    water = np.zeros((hh, ww), np.uint8)
    if lab[0, 0] == 0:  # oval pool (its corners are transparent)
        raster.ellipse(water, (ww // 2, hh // 2), (max(1, ww // 2 - c), max(1, hh // 2 - c)), 1)
    else:
        raster.rectangle(water, (c, c), (ww - 1 - c, hh - 1 - c), 1, -1)
    t = np.linspace(0, 1, ww, dtype=np.float32)[None, :, None]
    shallow, deep = _rgb(96, 204, 226), _rgb(44, 148, 204)
    grad = shallow * (1 - t) + deep * t
    wm = water.astype(bool)
    rgb[wm] = np.broadcast_to(grad, rgb.shape)[wm]
    return rgb, lab
