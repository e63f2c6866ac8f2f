"""Scene assembly: which category an image asks about, the categories it draws, the drawing
order, the camera look, and one rendered sample."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ... import raster
from ...errors import ConfigError
from .catalogue import CATEGORIES, CATEGORY_NAMES, CONFUSABLE, LABEL_IDS, _questions, REQUIRES
from .canvas import _Scene
from .ground import _coast, _river, _roads, _terrain
from .sites import _COUNTS, _LAND_SITES, _site_harbor, _site_lake, _site_ships

#: Bump whenever the output for a given seed changes: the embedded cache folder is named
#: after it, so a changed generator never reuses a stale cache.
GENERATOR_VERSION = "v3"
SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
MIN_SIDE, MAX_SIDE = 256, 1024
#: one image in every block of this many (at a seeded position) has no target: 5 %
EMPTY_EVERY = 20
#: render attempts per image before giving up (a retry happens when the target ends up
#: too small to see; in practice the first attempt almost always succeeds)
MAX_ATTEMPTS = 12


@dataclass
class SyntheticSample:
    """One rendered image: RGB pixels, the target mask, and its QA record."""

    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray   # (H, W) bool
    qa: dict = field(default_factory=dict)


def _check_split(split: str) -> None:
    if split not in _SPLIT_CODES:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def image_id(split: str, index: int) -> str:
    """The id of image ``index`` of ``split`` (no '.': the loader cuts ids at the first dot)."""
    return f"{split}_{index:05d}"


def planned_target(seed: int, split: str, index: int) -> tuple[str, bool]:
    """(category asked about, whether the image is an empty-target one).

    Categories are dealt in seeded shuffled rounds of all categories, so any
    ``len(CATEGORIES)`` consecutive images cover every category; one image per block of
    :data:`EMPTY_EVERY` (at a seeded position) is empty. Both depend only on
    ``(seed, split, index)``."""
    _check_split(split)
    code, k = _SPLIT_CODES[split], len(CATEGORIES)
    perm = np.random.default_rng([seed, code, index // k, 1]).permutation(k)
    slot = int(np.random.default_rng([seed, code, index // EMPTY_EVERY, 2]).integers(EMPTY_EVERY))
    return CATEGORY_NAMES[int(perm[index % k])], index % EMPTY_EVERY == slot


def _choose_categories(rng: np.random.Generator, target: str, empty: bool) -> list[str]:
    """The categories drawn in an image: the target (unless empty) and 3-6 distractors,
    closed under :data:`REQUIRES`; an empty image draws nothing that needs the asked one
    and nothing that could answer its question (:data:`CONFUSABLE`)."""
    excluded = {target}
    if empty:
        excluded |= {c for c, deps in REQUIRES.items() if target in deps} | set(CONFUSABLE.get(target, ()))
    pool = [c for c in CATEGORY_NAMES if c not in excluded]
    picks = [pool[int(i)] for i in rng.choice(len(pool), size=int(rng.integers(3, 7)), replace=False)]
    cats = picks + ([] if empty else [target])
    for cat, deps in REQUIRES.items():
        if cat in cats:
            if any(d in excluded for d in deps):
                cats.remove(cat)
            else:
                cats += [d for d in deps if d not in cats]
    return [c for c in CATEGORY_NAMES if c in cats]  # canonical order


def _draw_scene(rng: np.random.Generator, width: int, height: int, target: str, empty: bool) -> _Scene:
    cats = _choose_categories(rng, target, empty)
    sc = _Scene(rng, width, height, cats)

    def count(cat: str) -> int:
        lo, hi = _COUNTS[cat]
        return int(rng.integers(lo, hi + 1))

    def is_target(cat: str) -> bool:
        return not empty and cat == target

    _terrain(sc)
    ship_needs_sea = "ship" in cats and "lake" not in cats and "river" not in cats
    if "harbor" in cats or ship_needs_sea or (target not in ("lake", "river") and rng.random() < 0.15):
        _coast(sc)
    if "river" in cats:
        _river(sc, is_target("river"))
    if "road" in cats:
        _roads(sc, count("road"), is_target("road"))
    if "lake" in cats:
        _site_lake(sc, count("lake"), is_target("lake"))
    if "harbor" in cats:
        _site_harbor(sc, count("harbor"), is_target("harbor"))
    if "ship" in cats:
        _site_ships(sc, count("ship"), is_target("ship"))
    sites = [(c, f) for c, f in _LAND_SITES if c in cats]
    if "runway" in cats:  # one airport site draws both runway and aircraft
        sites = [(c, f) for c, f in sites if c != "airplane"]
    lead = "runway" if target == "airplane" and "runway" in cats else target
    sites.sort(key=lambda cf: cf[0] != lead)  # stable: the target's site first
    for cat, site in sites:
        site(sc, count(cat), is_target(cat))
    return sc


def _finish(sc: _Scene) -> np.ndarray:
    """Camera look: slight blur, colour balance, haze and sensor grain; to uint8."""
    rng = sc.rng
    gain = rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3)
    haze = rng.uniform(0.0, 0.12)
    grain = rng.normal(0, rng.uniform(2.0, 5.0), (64, 64, 3)).astype(np.float32)
    grain = np.tile(grain, (sc.H // 64 + 1, sc.W // 64 + 1, 1))[: sc.H, : sc.W]
    # add the grain, round half to even and saturate to uint8
    img = np.clip(np.rint(sc.img + grain), 0, 255).astype(np.uint8)
    # colour balance and haze are per-channel maps of 0..255: one lookup table
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(levels * gain * (1 - haze) + haze * np.array([200.0, 205.0, 215.0]) + 0.5, 0, 255)
    lut = lut.astype(np.uint8)
    img = np.stack([lut[:, c][img[..., c]] for c in range(3)], axis=-1)
    # blur last: softens drawn edges like optics
    return raster.gaussian_blur_u8(img, rng.uniform(0.5, 0.85))


def render_sample(seed: int, split: str, index: int) -> SyntheticSample:
    """Render image ``index`` of ``split`` for ``seed`` (deterministic, independent of the
    other images)."""
    target, empty = planned_target(seed, split, index)
    code = _SPLIT_CODES[split]
    tid = LABEL_IDS[target]
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, code, index, 0, attempt])
        width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
        sc = _draw_scene(rng, width, height, target, empty)
        counts = np.bincount(sc.labels.ravel(), minlength=256)
        area = int(counts[tid])
        if empty:
            assert area == 0, "an empty-target image drew its asked category"
            break
        # the target must be big enough to see (retry with the next sub-seed otherwise)
        if area >= max(48, 0.0005 * width * height) and sc.instances[target] > 0:
            break
    else:  # pragma: no cover - would need 12 unlucky layouts in a row
        raise RuntimeError(f"could not draw a visible {target} for {split}[{index}] seed {seed}")
    image = _finish(sc)
    mask = sc.labels == tid
    questions, answers = _questions(rng, target, max(1, sc.instances[target]), empty)
    present = [c for c in CATEGORY_NAMES if counts[LABEL_IDS[c]] > 0]
    qa = {
        "questions": questions,
        "answer": answers,
        "category": target,
        "target_present": not empty,
        "instances": 0 if empty else int(sc.instances[target]),
        "categories_present": present,
        "generator": f"think2seg-synthetic-{GENERATOR_VERSION}",
    }
    return SyntheticSample(image_id(split, index), image, mask, qa)
