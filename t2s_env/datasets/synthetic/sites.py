"""Sites: each places a category's instances in the scene and returns how many it placed."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ... import raster

from .catalogue import LABEL_IDS
from .canvas import _angle_of, _canvas, CTX, FREE, HARD, _ipts, PAVED, _rgb, _rot, _Scene, SOFT, WATER
from .ground import _coast_point
from .sprites import (
    _apron_sprite, _building_sprite, _field_sprite, _forest_sprite, _greenhouse_sprite,
    _lake_sprite, _parking_sprite, _pier_sprite, _plane_sprite, _pool_sprite,
    _runway_sprite, _ship_sprite, _solar_sprite, _sports_sprite, _tank_sprite,
    _tennis_sprite,
)


def _place(sc: _Scene, build: Callable[[], tuple[np.ndarray, np.ndarray, float]], tries: int, ok=(FREE,),
           margin: int = 2, min_inside: float = 1.0, soft_pass: bool = False):
    """Build a sprite once (``build()`` -> (rgb, lab, angle)) and try random positions for
    it; with ``soft_pass`` a second round may cover roads and distractor fields."""
    rgb, lab, angle = build()
    p = sc.sprite(rgb, lab, angle, (0.0, 0.0))
    h, w = p.lab.shape
    # keep the centre far enough from the edges for the required inside fraction
    reach = (0.5 * w * min_inside - 3, 0.5 * h * min_inside - 3)
    rounds = [tuple(ok)] + ([tuple(ok) + (SOFT,)] if soft_pass and SOFT not in ok else [])
    for allowed in rounds:
        for _ in range(tries):
            q = p.moved_to(sc.random_point(margin=reach))
            if sc.fits(q, allowed, margin=margin, min_inside=min_inside):
                return q
    return None


def _site_lake(sc: _Scene, count: int, target: bool) -> int:
    rng, placed = sc.rng, 0
    for _ in range(count):
        r = sc.u * rng.uniform(0.08, 0.18)
        p = _place(sc, lambda: (*_lake_sprite(sc, rng, r), 0.0), tries=10, margin=2, min_inside=0.8, soft_pass=True)
        if p is not None:
            sc.put(p, occ_cat=WATER, occ_ctx=sc.occ_for("lake", target), tex=0.03)
            placed += 1
    sc.instances["lake"] += placed
    return placed


def _site_forest(sc: _Scene, count: int, target: bool) -> int:
    rng, placed = sc.rng, 0
    for _ in range(count):
        r = sc.u * rng.uniform(0.09, 0.2)
        p = _place(sc, lambda: (*_forest_sprite(sc, rng, r), 0.0), tries=8, margin=2, min_inside=0.7, soft_pass=True)
        if p is not None:
            sc.put(p, occ_cat=sc.occ_for("forest", target), shadow=max(2.0, sc.u * 0.012), tex=0.0)
            placed += 1
    sc.instances["forest"] += placed
    return placed


def _site_farmland(sc: _Scene, count: int, target: bool) -> int:
    """A patchwork of fields sharing an orientation, separated by grass margins."""
    rng, placed = sc.rng, 0
    for _cluster in range(3):
        if placed >= count:
            break
        angle = rng.uniform(-30, 30) + (90 if rng.random() < 0.5 else 0)
        fw, fh = sc.u * rng.uniform(0.14, 0.3), sc.u * rng.uniform(0.1, 0.22)
        gap = max(2.0, sc.u * 0.01)
        cols = min(3, count - placed)
        rows = 1 if count - placed <= 2 else 2
        centre = sc.random_point(margin=min(fw, fh))
        for r in range(rows):
            for c in range(cols):
                if placed >= count:
                    break
                off = np.array([(c - (cols - 1) / 2) * (fw + gap), (r - (rows - 1) / 2) * (fh + gap)])
                at = centre + _rot(angle, off)
                rgb, lab = _field_sprite(rng, fw * rng.uniform(0.85, 1.0), fh * rng.uniform(0.85, 1.0),
                                         max(2.5, sc.u * rng.uniform(0.008, 0.018)))
                p = sc.sprite(rgb, lab, angle, at)
                if sc.fits(p, (FREE, SOFT) if target else (FREE,), margin=1, min_inside=0.6):
                    sc.put(p, occ_cat=sc.occ_for("farmland", target), tex=0.03)
                    placed += 1
    sc.instances["farmland"] += placed
    return placed


def _site_buildings(sc: _Scene, count: int, target: bool) -> int:
    """Blocks of buildings on a shared grid, each casting a shadow."""
    rng, placed = sc.rng, 0
    anchors = sc.anchors.setdefault("building", [])
    for _cluster in range(6):
        if placed >= count:
            break
        size = sc.u * rng.uniform(0.04, 0.075)
        angle = rng.uniform(0, 180)
        cols, rows = int(rng.integers(2, 5)), int(rng.integers(1, 4))
        cell = size * rng.uniform(1.5, 1.9)
        centre = sc.random_point(margin=size)
        for r in range(rows):
            for c in range(cols):
                if placed >= count:
                    break
                off = np.array([(c - (cols - 1) / 2) * cell, (r - (rows - 1) / 2) * cell * 1.15])
                at = centre + _rot(angle, off) + rng.normal(0, size * 0.1, 2)
                bw, bh = size * rng.uniform(0.8, 1.4), size * rng.uniform(0.55, 0.9)
                a = angle + rng.normal(0, 2)
                rgb, lab = _building_sprite(sc, rng, max(4.0, bw), max(4.0, bh), a)
                p = sc.sprite(rgb, lab, a, at)
                if sc.fits(p, (FREE,), margin=2):
                    sc.put(p, occ_cat=HARD, shadow=size * rng.uniform(0.3, 1.0), tex=0.04)
                    anchors.append(at)
                    placed += 1
    sc.instances["building"] += placed
    return placed


def _site_tanks(sc: _Scene, count: int, target: bool) -> int:
    """Tanks in a grid on a bunded concrete pad."""
    rng, placed = sc.rng, 0
    for _pad in range(3):
        if placed >= count:
            break
        r = max(4.0, sc.u * rng.uniform(0.022, 0.045))
        spacing = 2 * r * rng.uniform(1.3, 1.6)
        cols = int(min(4, max(1, math.ceil(math.sqrt(count - placed) * 1.3))))
        rows = int(max(1, math.ceil((count - placed) / cols)))
        angle = rng.uniform(0, 90)
        pad_w, pad_h = cols * spacing + r, rows * spacing + r
        rgb, lab = _canvas(pad_w, pad_h, _rgb(160, 156, 146) * rng.uniform(0.9, 1.05))
        lab[:] = CTX
        raster.rectangle(rgb, (0, 0), (lab.shape[1] - 1, lab.shape[0] - 1), (196.0, 192.0, 184.0), 1)
        p = _place(sc, lambda: (rgb, lab, angle), tries=12, margin=2)
        if p is None:
            continue
        sc.put(p, occ_ctx=PAVED, tex=0.04)
        for row in range(rows):
            for col in range(cols):
                if placed >= count:
                    break
                at = p.point((col + 0.5) * spacing + r / 2, (row + 0.5) * spacing + r / 2)
                tr = r * rng.uniform(0.8, 1.0)
                t_rgb, t_lab = _tank_sprite(sc, rng, tr)
                q = sc.sprite(t_rgb, t_lab, 0.0, at)
                if sc.fits(q, (PAVED,), margin=1):
                    sc.put(q, occ_cat=HARD, shadow=tr * rng.uniform(0.6, 1.2), tex=0.02)
                    placed += 1
    sc.instances["storage_tank"] += placed
    return placed


def _site_airport(sc: _Scene, count: int, target: bool) -> int:
    """A runway with a parallel taxiway and an apron (with parked aircraft when airplanes
    belong in the image), or, without a runway, an apron with aircraft. Draws both
    categories at once, so ``count`` is not used: one runway, 1-5 aircraft."""
    rng = sc.rng
    has_runway, has_planes = "runway" in sc.cats, "airplane" in sc.cats
    plane_len = max(16.0, sc.u * rng.uniform(0.07, 0.12))
    lo, hi = _COUNTS["airplane"]
    n_planes = int(rng.integers(lo, hi + 1)) if has_planes else 0
    placed_runway = 0
    apron_patch = None
    apron_slots: list[np.ndarray] = []
    plane_angle = 0.0
    if has_runway:
        for attempt in range(8):  # each attempt a little shorter, tried at 4 positions
            angle = (0.0 if sc.W >= sc.H else 90.0) + rng.normal(0, 20)
            a = math.radians(angle)
            lmax = min(sc.W / max(abs(math.cos(a)), 1e-6), sc.H / max(abs(math.sin(a)), 1e-6))
            L = lmax * rng.uniform(0.6, 0.92) * (0.93 ** attempt)
            w = max(8.0, sc.u * rng.uniform(0.035, 0.06))
            gapw, tw = w * rng.uniform(1.4, 2.2), max(4.0, w * 0.45)
            apron_d = plane_len * 1.6 if has_planes else w * rng.uniform(1.0, 2.0)
            apron_l = min(L * 0.6, max(plane_len * 1.25 * n_planes + plane_len * 0.5, L * 0.25))
            H = w + gapw + tw + apron_d
            rgb, lab = _canvas(L, H, _rgb(112, 132, 80) * rng.uniform(0.9, 1.1))  # mown grass
            lab[:] = CTX
            r_rgb, r_lab = _runway_sprite(rng, L, w, dark=rng.random() < 0.6)
            rh = r_lab.shape[0]
            rgb[:rh], lab[:rh] = r_rgb[:, : rgb.shape[1]], r_lab[:, : rgb.shape[1]]
            concrete = _rgb(150, 150, 146)
            ty = w + gapw
            raster.rectangle(rgb, (int(L * 0.08), int(ty)), (int(L * 0.92), int(ty + tw)), [float(v) for v in concrete], -1)
            for xc in (L * 0.08, L * 0.5, L * 0.92 - tw):  # connectors runway <-> taxiway
                raster.rectangle(rgb, (int(xc), int(w)), (int(xc + tw), int(ty)), [float(v) for v in concrete], -1)
            raster.line(rgb, (int(L * 0.08), int(ty + tw / 2)), (int(L * 0.92), int(ty + tw / 2)), (200.0, 170.0, 60.0), 1)
            ax0 = L * rng.uniform(0.15, 0.85 - apron_l / L) if apron_l < L * 0.7 else L * 0.15
            a_rgb, _ = _apron_sprite(rng, apron_l, apron_d)
            ay0 = int(ty + tw)
            ah, aw = a_rgb.shape[:2]
            ah, aw = min(ah, rgb.shape[0] - ay0), min(aw, rgb.shape[1] - int(ax0))
            rgb[ay0: ay0 + ah, int(ax0): int(ax0) + aw] = a_rgb[:ah, :aw]
            p = sc.sprite(rgb, lab, angle, (0.0, 0.0))
            reach = (0.4 * p.lab.shape[1], 0.4 * p.lab.shape[0])
            p = next((q for q in (p.moved_to(sc.random_point(margin=reach)) for _ in range(4))
                      if sc.fits(q, (FREE, SOFT), margin=2, min_inside=0.85)), None)
            if p is not None:
                sc.put(p, occ_cat=HARD, occ_ctx=PAVED, tex=0.04)
                placed_runway = 1
                apron_patch = p
                slot = plane_len * 1.25
                k = int(aw // slot)
                for j in range(k):
                    apron_slots.append(p.point(ax0 + (j + 0.5) * aw / max(k, 1), ay0 + ah * 0.5))
                plane_angle = angle + 90  # noses toward the taxiway
                break
        sc.instances["runway"] += placed_runway
    if has_planes and apron_patch is None:
        # a stand-alone apron
        aw, ah = plane_len * 1.3 * n_planes + plane_len * 0.4, plane_len * 1.6
        angle = rng.uniform(0, 180)
        a_rgb, a_lab = _apron_sprite(rng, aw, ah)
        p = _place(sc, lambda: (a_rgb, a_lab, angle), tries=16, margin=2, soft_pass=True)
        if p is not None:
            sc.put(p, occ_ctx=PAVED, tex=0.04)
            for j in range(n_planes):
                apron_slots.append(p.point(plane_len * 0.2 + (j + 0.5) * plane_len * 1.3, ah * 0.5))
            plane_angle = angle + 90
    planes = 0
    if has_planes:
        order = rng.permutation(len(apron_slots))[:n_planes]
        for j in order:
            pr, pl = _plane_sprite(rng, plane_len * rng.uniform(0.85, 1.0))
            a = plane_angle + rng.normal(0, 4) + (180 if rng.random() < 0.15 else 0)
            q = sc.sprite(pr, pl, a, apron_slots[j])
            if sc.fits(q, (PAVED,), margin=1, min_inside=1.0):
                sc.put(q, occ_cat=HARD, shadow=plane_len * 0.15, tex=0.02)
                planes += 1
        sc.instances["airplane"] += planes
    return placed_runway + planes


def _site_harbor(sc: _Scene, count: int, target: bool) -> int:
    """Piers built out from the shore, joined by a quay, with berths for ships."""
    rng = sc.rng
    side, prof = sc.coast
    along = len(prof)
    width = max(4.0, sc.u * rng.uniform(0.018, 0.035))
    length = min(float(np.min(prof)) * rng.uniform(0.45, 0.8), sc.u * rng.uniform(0.14, 0.28))
    if length < width * 3:
        return 0
    spacing = max(width * 6, sc.u * rng.uniform(0.1, 0.16))
    start = rng.uniform(0.1, 0.5) * along
    placed, positions = 0, []
    s = start
    while placed < count and s < along * 0.92:
        root, out = _coast_point(sc, s)
        angle = _angle_of(out) + rng.normal(0, 4)
        rgb, lab = _pier_sprite(rng, length, width, t_head=rng.random() < 0.4)
        anchor = (0.0, (lab.shape[0] - 1) / 2)
        p = sc.sprite(rgb, lab, angle, root - out * width, anchor=anchor)
        if sc.fits(p, (FREE, SOFT, WATER), margin=1, min_inside=1.0, min_water=0.5):
            sc.put(p, occ_cat=HARD, shadow=width * 0.4, tex=0.04)
            placed += 1
            positions.append(s)
            direction = _rot(angle, np.array([1.0, 0.0]))
            sc.berths.append((root, direction, angle, length))
        s += spacing * rng.uniform(0.9, 1.2)
    if placed >= 2 or (placed == 1 and rng.random() < 0.5):
        # a quay along the shore joining the piers
        s0, s1 = min(positions) - width * 2, max(positions) + width * 2
        a_root, out = _coast_point(sc, (s0 + s1) / 2)
        tangent = np.array([out[1], -out[0]])
        qlen, qdep = (s1 - s0), width * rng.uniform(1.8, 3.0)
        rgb, lab = _canvas(qlen, qdep, _rgb(164, 160, 150))
        lab[:] = LABEL_IDS["harbor"]
        p = sc.sprite(rgb, lab, _angle_of(tangent), a_root)
        if sc.fits(p, (FREE, SOFT, WATER), margin=0, min_inside=0.9):
            sc.put(p, occ_cat=HARD, tex=0.04)
    sc.instances["harbor"] += placed
    return placed


def _wake(sc: _Scene, centre: np.ndarray, angle: float, L: float, beam: float) -> None:
    """Lighten the water in a V behind a moving ship (no label: a wake is just water)."""
    ahead = _rot(angle, np.array([1.0, 0.0]))
    side = np.array([-ahead[1], ahead[0]])
    stern = centre - ahead * L * 0.45
    far = stern - ahead * L * sc.rng.uniform(1.0, 1.8)
    poly = np.array([stern + side * beam * 0.45, far + side * beam * 1.3, far - side * beam * 1.3,
                     stern - side * beam * 0.45])
    x0, y0 = np.floor(poly.min(axis=0)).astype(int)
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 1
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    raster.fill_poly(m, _ipts(poly - [x0, y0]), 1)
    core = np.zeros_like(m)
    raster.fill_poly(core, _ipts(np.array([stern + side * beam * 0.3, stern + (far - stern) * 0.6,
                                        stern - side * beam * 0.3]) - [x0, y0]), 1)
    cl = sc._clip(int(x0), int(y0), *m.shape)
    if cl is None:
        return
    ys, xs, py, px = cl
    water = sc.occ[ys, xs] == WATER
    region = sc.img[ys, xs]
    region[m[py, px].astype(bool) & water] *= 1.18
    region[core[py, px].astype(bool) & water] *= 1.2


def _site_ships(sc: _Scene, count: int, target: bool) -> int:
    """Ships moored at the piers first, then anywhere on open water (aligned with the
    river when they are on it)."""
    rng, placed = sc.rng, 0
    water = np.flatnonzero(sc.occ == WATER)
    if water.size == 0:
        return 0
    tries = 0
    while placed < count and tries < 40 + 10 * count:
        tries += 1
        L = max(12.0, sc.u * rng.uniform(0.05, 0.12))
        if sc.berths and tries <= 2 * len(sc.berths) and rng.random() < 0.7:
            root, direction, angle, plen = sc.berths[int(rng.integers(len(sc.berths)))]
            side = _rot(90, direction) * (1 if rng.random() < 0.5 else -1)
            rgb, lab = _ship_sprite(rng, min(L, plen * 0.9))
            beam = lab.shape[0] - 4
            at = root + direction * plen * rng.uniform(0.4, 0.6) + side * (beam / 2 + sc.u * 0.02 + 2)
            a = angle + (180 if rng.random() < 0.5 else 0)
        else:
            i = int(water[int(rng.integers(water.size))])
            at = np.array([i % sc.W, i // sc.W], dtype=np.float64)
            a = rng.uniform(0, 360)
            if sc.river_mask is not None and sc.river_mask[i // sc.W, i % sc.W]:
                j = int(np.argmin(np.sum((sc.river_path - at) ** 2, axis=1)))
                a = _angle_of(sc.river_tangent[j]) + (180 if rng.random() < 0.5 else 0) + rng.normal(0, 5)
                L = min(L, sc.u * 0.08)
            rgb, lab = _ship_sprite(rng, L)
        p = sc.sprite(rgb, lab, a, at)
        if sc.fits(p, (WATER,), margin=1):
            if rng.random() < 0.4 and not sc.berths:  # under way: a wake behind the stern
                _wake(sc, np.asarray(at, float), a, lab.shape[1] - 4, lab.shape[0] - 4)
            sc.put(p, occ_cat=HARD, occ_ctx=WATER, shadow=max(1.0, L * 0.06), tex=0.02)
            placed += 1
    sc.instances["ship"] += placed
    return placed


def _site_sports(sc: _Scene, count: int, target: bool) -> int:
    rng, placed = sc.rng, 0
    for _ in range(count):
        L = sc.u * rng.uniform(0.22, 0.38)
        angle = rng.uniform(0, 180)
        p = _place(sc, lambda: (*_sports_sprite(rng, L), angle), tries=12, margin=3, soft_pass=True)
        if p is not None:
            sc.put(p, occ_cat=HARD, tex=0.03)
            placed += 1
    sc.instances["sports_field"] += placed
    return placed


def _site_tennis(sc: _Scene, count: int, target: bool) -> int:
    rng, placed = sc.rng, 0
    while placed < count:
        k = int(min(count - placed, rng.integers(1, 4)))
        Lc = max(20.0, sc.u * rng.uniform(0.06, 0.09))
        angle = rng.uniform(0, 180)
        p = _place(sc, lambda: (*_tennis_sprite(rng, Lc, k), angle), tries=12, margin=2, soft_pass=True)
        if p is None:
            break
        sc.put(p, occ_cat=HARD, tex=0.02)
        placed += k
    sc.instances["tennis_court"] += placed
    return placed


def _site_parking(sc: _Scene, count: int, target: bool) -> int:
    rng, placed = sc.rng, 0
    for _ in range(count):
        w, h = sc.u * rng.uniform(0.12, 0.24), sc.u * rng.uniform(0.08, 0.16)
        bay = max(6.0, sc.u * rng.uniform(0.022, 0.03))
        angle = rng.uniform(0, 180)
        p = _place(sc, lambda: (*_parking_sprite(rng, w, h, bay), angle), tries=12, margin=2, soft_pass=True)
        if p is not None:
            sc.put(p, occ_cat=HARD, tex=0.03)
            placed += 1
    sc.instances["parking_lot"] += placed
    return placed


def _site_solar(sc: _Scene, count: int, target: bool) -> int:
    rng, placed = sc.rng, 0
    for _ in range(count):
        w, h = sc.u * rng.uniform(0.15, 0.32), sc.u * rng.uniform(0.1, 0.25)
        row = max(3.0, sc.u * rng.uniform(0.012, 0.022))
        angle = rng.uniform(-15, 15) + (90 if rng.random() < 0.3 else 0)
        p = _place(sc, lambda: (*_solar_sprite(rng, w, h, row), angle), tries=12, margin=2, soft_pass=True)
        if p is not None:
            sc.put(p, occ_cat=HARD, shadow=row * 0.35, tex=0.02)
            placed += 1
    sc.instances["solar_farm"] += placed
    return placed


def _site_greenhouses(sc: _Scene, count: int, target: bool) -> int:
    """Parallel greenhouses in a row, each with a faint shadow."""
    rng, placed = sc.rng, 0
    for _cluster in range(4):
        if placed >= count:
            break
        length = sc.u * rng.uniform(0.07, 0.13)
        width = max(5.0, length / rng.uniform(2.5, 5.0))
        angle = rng.uniform(0, 180)
        centre = sc.random_point(margin=length)
        n = count - placed
        for j in range(n):
            at = centre + _rot(angle, np.array([0.0, (j - (n - 1) / 2) * width * 1.35]))
            rgb, lab = _greenhouse_sprite(rng, length, width)
            p = sc.sprite(rgb, lab, angle, at)
            if sc.fits(p, (FREE,), margin=1):
                sc.put(p, occ_cat=HARD, shadow=width * 0.3, tex=0.02)
                placed += 1
    sc.instances["greenhouse"] += placed
    return placed


def _site_pools(sc: _Scene, count: int, target: bool) -> int:
    """Pools, next to buildings when there are any (back gardens), else anywhere."""
    rng, placed = sc.rng, 0
    anchors = sc.anchors.get("building", [])
    for _ in range(count * 12):
        if placed >= count:
            break
        w = max(9.0, sc.u * rng.uniform(0.035, 0.07))
        h = max(5.0, w * rng.uniform(0.45, 0.7))
        rgb, lab = _pool_sprite(rng, w, h)
        angle = rng.uniform(0, 180)
        if anchors and rng.random() < 0.8:
            base = anchors[int(rng.integers(len(anchors)))]
            at = base + _rot(rng.uniform(0, 360), np.array([sc.u * rng.uniform(0.05, 0.09), 0.0]))
        else:
            at = sc.random_point(margin=w)
        p = sc.sprite(rgb, lab, angle, at)
        if sc.fits(p, (FREE,), margin=2):
            sc.put(p, occ_cat=HARD, tex=0.02)
            placed += 1
    sc.instances["swimming_pool"] += placed
    return placed


#: land sites in drawing order: large areas before small objects (the target goes first)
_LAND_SITES: tuple[tuple[str, Callable[[_Scene, int, bool], int]], ...] = (
    ("runway", _site_airport),
    ("airplane", _site_airport),
    ("sports_field", _site_sports),
    ("solar_farm", _site_solar),
    ("parking_lot", _site_parking),
    ("farmland", _site_farmland),
    ("forest", _site_forest),
    ("building", _site_buildings),
    ("storage_tank", _site_tanks),
    ("greenhouse", _site_greenhouses),
    ("tennis_court", _site_tennis),
    ("swimming_pool", _site_pools),
)
#: instances wanted per category: (min, max) inclusive
_COUNTS: dict[str, tuple[int, int]] = {
    "runway": (1, 1), "airplane": (1, 5), "storage_tank": (2, 8), "harbor": (1, 3), "ship": (1, 5),
    "building": (3, 10), "road": (1, 3), "river": (1, 1), "lake": (1, 2), "farmland": (1, 4),
    "sports_field": (1, 2), "swimming_pool": (1, 4), "tennis_court": (1, 3), "bridge": (1, 1),
    "solar_farm": (1, 2), "parking_lot": (1, 3), "greenhouse": (2, 6), "forest": (1, 3),
}
