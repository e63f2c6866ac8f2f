"""Procedural synthetic EarthReason-format dataset (SPEC §7 layout), no download needed.

Each image is a top-down scene drawn with numpy and OpenCV: a noise-textured terrain,
then (depending on the image) a coast, a river, roads with bridges, lakes, a harbour with
ships, an airport (runway, taxiway, apron, aircraft), fields, woods, buildings with cast
shadows, storage tanks, sports grounds, tennis courts, swimming pools, parking lots,
solar farms and greenhouses. Every image has one *target* category; its mask is the union
of the visible pixels of all its drawn instances (an exact per-pixel label map is kept
while drawing, so later objects that cover part of a target are cut out of its mask).
Its questions describe a purpose or a property ("Where could a plane take off?") and never
name the category. One image in :data:`EMPTY_EVERY` asks about a category that is absent:
its ``answer`` is ``[]`` and its mask all zero.

Layout (what :class:`~t2s_env.datasets.EarthReasonDataset` reads)::

    <out>/<split>/images/<id>.jpg   RGB JPEG (quality 90); width, height drawn apart in 256-1024
    <out>/<split>/labels/<id>.png   single channel uint8, 0 or 255
    <out>/<split>/QAs/<id>.json     {"questions": [...], "answer": [...], "category": ...}
    <out>/synthetic.json            generator version, seed, split sizes

Determinism: image ``i`` of split ``s`` depends only on ``(seed, s, i)`` (a numpy
Generator seeded with that tuple), so outputs are byte-identical across runs and an image
does not change when ``n`` changes. Entry points: :func:`generate` (``t2s data synth``),
:func:`embedded_root` (the cached default set behind ``make_dataset("synthetic:<split>")``)
and :func:`render_sample` (one image in memory).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from ..errors import ConfigError, DatasetError

#: Bump whenever the output for a given seed changes: the embedded cache folder is named
#: after it, so a changed generator never reuses a stale cache.
GENERATOR_VERSION = "v1"
EMBEDDED_SEED = 0
EMBEDDED_SIZES: Mapping[str, int] = {"train": 120, "val": 40, "test": 40}
SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
MIN_SIDE, MAX_SIDE = 256, 1024
#: one image in every block of this many (at a seeded position) has no target: 5 %
EMPTY_EVERY = 20
QUESTIONS_PER_IMAGE = (3, 5)
JPEG_QUALITY = 90
MANIFEST = "synthetic.json"
#: render attempts per image before giving up (a retry happens when the target ends up
#: too small to see; in practice the first attempt almost always succeeds)
MAX_ATTEMPTS = 12


# ==========================================================================================
# Categories and questions
# ==========================================================================================

@dataclass(frozen=True)
class Category:
    """A target category: its name, the words its questions must avoid, and its
    (question, answer-rationale) templates."""

    name: str
    noun: str
    plural: str
    #: category name and obvious synonyms; no question of this category may contain them
    banned: tuple[str, ...]
    #: (question, rationale); the answer reads "The <noun>, <rationale>."
    qa: tuple[tuple[str, str], ...]


CATEGORIES: tuple[Category, ...] = (
    Category("runway", "runway", "runways",
             ("runway", "airstrip", "landing strip", "airfield", "airport", "tarmac"), (
        ("Where could a plane take off?", "the long paved strip from which aircraft take off"),
        ("Where would a jet touch down at the end of its flight?", "the paved strip built for landing aircraft"),
        ("Which long straight surface lets aircraft gather speed before lifting off?", "the surface where aircraft accelerate to take off"),
        ("Where would a pilot line up for departure?", "the strip a pilot lines up on before departure"),
        ("Which surface is marked with threshold stripes for arriving aircraft?", "marked with threshold stripes and a dashed centre line"),
        ("Where could an airliner land safely?", "the long paved surface built for landing airliners"),
    )),
    Category("airplane", "airplane", "airplanes",
             ("airplane", "aeroplane", "aircraft", "plane", "jet", "airliner"), (
        ("What here could fly passengers to another city?", "which carry passengers through the air"),
        ("Which objects have wings and could carry travellers through the sky?", "the winged machines that fly travellers"),
        ("What is parked on the apron waiting to board passengers?", "parked on the apron before boarding"),
        ("Which vehicles in this scene are able to fly?", "the only vehicles here that can fly"),
        ("What could be refuelled before a long-haul flight?", "refuelled before a long flight"),
        ("Which machines could take off from a long paved strip?", "able to take off from a long paved strip"),
    )),
    Category("storage_tank", "storage tank", "storage tanks",
             ("storage tank", "tank", "silo", "cistern", "tanker"), (
        ("Where might oil or fuel be kept in bulk?", "built to hold oil or fuel in bulk"),
        ("Which round structures could hold large amounts of liquid?", "round containers for large volumes of liquid"),
        ("Where could a refinery keep its crude before processing?", "where crude is kept before processing"),
        ("What cylindrical structures might store chemicals or gas?", "cylinders that store chemicals or gas"),
        ("Which structures store liquids for the nearby industry?", "storing liquids for the industrial site"),
    )),
    Category("harbor", "harbour", "harbour structures",
             ("harbor", "harbour", "port", "dock", "pier", "wharf", "quay", "marina", "jetty"), (
        ("Where might ships be repaired or unloaded?", "where ships moor to be unloaded or repaired"),
        ("Where could a cargo vessel moor to unload its freight?", "where cargo vessels moor to unload"),
        ("Which structures let boats tie up along the shore?", "built out from the shore for boats to tie up"),
        ("Where would a ferry let its passengers off?", "where ferries land their passengers"),
        ("Where could fishermen land their catch?", "where fishing boats land their catch"),
        ("Which platforms reach out into the water for mooring vessels?", "the platforms reaching into the water for mooring"),
    )),
    Category("ship", "ship", "ships",
             ("ship", "boat", "vessel", "ferry", "tanker", "yacht", "freighter"), (
        ("What could carry cargo across the water?", "which carry cargo across the water"),
        ("What is floating on the water and could carry passengers?", "floating on the water and able to carry passengers"),
        ("Which objects could sail to another coast?", "able to sail to another coast"),
        ("What might be moving goods over the water?", "moving goods over the water"),
        ("Which craft on the water could a crew steer?", "steered by a crew on the water"),
        ("What could a fisherman use to go out to sea?", "what a fisherman takes out to sea"),
    )),
    Category("building", "building", "buildings",
             ("building", "house", "home", "dwelling", "residence", "warehouse"), (
        ("Where could people live or work?", "where people live or work"),
        ("Which roofed structures could shelter a family from the rain?", "roofed shelters from the rain"),
        ("Where might office workers spend their day?", "where office workers spend their day"),
        ("Which constructions cast the blocky shadows on the ground?", "casting the blocky shadows"),
        ("Where could a shopkeeper sell goods indoors?", "where goods can be sold indoors"),
        ("Which roofs could hold a rooftop garden?", "roofed structures that could carry a garden"),
    )),
    Category("road", "road", "roads",
             ("road", "street", "highway", "motorway", "avenue", "freeway"), (
        ("Which paths could cars drive along?", "the paved routes for cars"),
        ("Where could a delivery truck travel between places?", "the paved routes a truck can use"),
        ("What paved routes connect the different parts of this area?", "connecting the parts of this area"),
        ("Where could a cyclist ride to the next town?", "leading on to the next town"),
        ("Which surfaces carry vehicle traffic?", "carrying the vehicle traffic"),
    )),
    Category("river", "river", "rivers",
             ("river", "stream", "creek", "brook", "canal", "waterway"), (
        ("What flowing water could a kayak travel down?", "the flowing water a kayak can follow"),
        ("Where does water flow through this landscape?", "carrying water through the landscape"),
        ("Which winding water course could flood after heavy rain?", "the winding course that floods after heavy rain"),
        ("What natural channel carries water across the land?", "the natural channel of flowing water"),
        ("Where would rainwater from the hills eventually drain?", "where rainwater from the hills drains"),
    )),
    Category("lake", "lake", "lakes",
             ("lake", "pond", "reservoir", "pool", "lagoon", "mere"), (
        ("Which still body of water could people fish in?", "the still water people can fish in"),
        ("Where could a family go boating on calm water?", "the calm water suitable for boating"),
        ("What enclosed water body could supply drinking water?", "an enclosed body of water that can supply drinking water"),
        ("Where might ducks gather on open water?", "the open water where ducks gather"),
        ("Which calm water surface is surrounded by land?", "the calm water enclosed by land"),
    )),
    Category("farmland", "farmland", "farmland plots",
             ("farmland", "farm", "field", "cropland", "arable", "agricultural"), (
        ("Where might crops be grown?", "where crops are grown"),
        ("Where could a tractor plough the soil?", "soil worked by tractors"),
        ("Which cultivated plots could produce wheat or maize?", "cultivated plots for wheat or maize"),
        ("Where would a harvester work in autumn?", "where harvesters work in autumn"),
        ("Which land is planted in neat rows?", "planted in neat rows"),
    )),
    Category("sports_field", "sports ground", "sports grounds",
             ("sport", "sports", "field", "pitch", "stadium", "track", "arena", "ground"), (
        ("Where could a football match be played?", "marked out for football matches"),
        ("Where might students run laps during a PE lesson?", "where students run laps"),
        ("Which green rectangle with white lines hosts team games?", "the lined green area for team games"),
        ("Where could athletes train for a sprint race?", "where athletes train for sprints"),
        ("Where would spectators watch a weekend match?", "where spectators watch matches"),
    )),
    Category("swimming_pool", "swimming pool", "swimming pools",
             ("swimming pool", "pool", "swimming", "swim", "lido"), (
        ("Where could residents take a dip on a hot afternoon?", "where residents take a dip"),
        ("Which small bright blue basins are meant for bathing?", "the bright blue basins for bathing"),
        ("Where could children splash in the backyard?", "where children splash in the backyard"),
        ("What could a lifeguard be watching over?", "what a lifeguard watches over"),
        ("Where might someone practise the backstroke?", "where someone can practise the backstroke"),
    )),
    Category("tennis_court", "tennis court", "tennis courts",
             ("tennis", "court", "badminton"), (
        ("Where could two players hit a ball over a net?", "where players hit a ball over a net"),
        ("Where could a doubles match with rackets be played?", "marked out for doubles matches with rackets"),
        ("Which small hard-surfaced rectangles are marked out for racket games?", "hard-surfaced and lined for racket games"),
        ("Where might someone practise their serve?", "where a serve can be practised"),
        ("Where could a coach teach forehands and volleys?", "where forehands and volleys are taught"),
    )),
    Category("bridge", "bridge", "bridges",
             ("bridge", "overpass", "viaduct", "flyover"), (
        ("Where can traffic cross over the water?", "where traffic crosses the water"),
        ("Which structure lets cars reach the opposite bank?", "carrying cars to the opposite bank"),
        ("Where does the route span the flowing water?", "where the route spans the water"),
        ("Where could pedestrians walk across without getting wet?", "where people cross the water dry-shod"),
        ("Which crossing would boats have to pass underneath?", "the crossing that boats pass under"),
    )),
    Category("solar_farm", "solar farm", "solar farms",
             ("solar", "panel", "photovoltaic", "pv"), (
        ("What could turn sunlight into electricity?", "turning sunlight into electricity"),
        ("Where might renewable power be generated from the sun?", "generating renewable power from the sun"),
        ("Which dark arrays are angled to catch the daylight?", "the dark arrays angled to catch daylight"),
        ("Where is electricity harvested from sunshine?", "where electricity is harvested from sunshine"),
        ("Which installation could supply green energy to the grid?", "supplying green energy to the grid"),
    )),
    Category("parking_lot", "parking lot", "parking lots",
             ("parking", "car park", "lot", "garage"), (
        ("Where could visitors leave their cars?", "where visitors leave their cars"),
        ("Where might shoppers stop their vehicles for a few hours?", "where shoppers leave their vehicles"),
        ("Which paved area is marked out with rows of bays for cars?", "the paved area lined with bays for cars"),
        ("Where could a driver find an empty space for the car?", "where drivers find a free space"),
        ("Where are vehicles left standing in neat rows?", "where vehicles stand in rows"),
    )),
    Category("greenhouse", "greenhouse", "greenhouses",
             ("greenhouse", "glasshouse", "polytunnel", "hothouse", "conservatory"), (
        ("Where might vegetables be grown under cover all year?", "covered structures for year-round growing"),
        ("Which bright translucent structures protect plants from frost?", "the translucent structures that keep frost off plants"),
        ("Where could tomatoes ripen in winter?", "where tomatoes ripen in winter"),
        ("Which glazed sheds keep seedlings warm?", "the glazed sheds that keep seedlings warm"),
        ("Where could a gardener raise delicate plants indoors?", "where delicate plants are raised under cover"),
    )),
    Category("forest", "forest", "forest patches",
             ("forest", "wood", "woods", "woodland", "tree", "grove", "jungle", "copse"), (
        ("Where could timber be harvested?", "where timber can be harvested"),
        ("Where might deer hide under a dense canopy?", "the dense canopy where deer hide"),
        ("Which areas could a lumberjack work in?", "where a lumberjack works"),
        ("Where could hikers find shade under leafy cover?", "the leafy cover that gives shade"),
        ("Which dense green areas absorb the most carbon?", "the dense green cover absorbing carbon"),
    )),
)

CATEGORY_BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
#: label-map value of each category (0 is background)
LABEL_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(CATEGORY_NAMES)}
#: categories that cannot be drawn without others (a bridge joins two roads over a river)
REQUIRES: dict[str, tuple[str, ...]] = {"bridge": ("road", "river")}
#: optional lead-ins that vary the wording of a question
_PREFIXES = ("", "", "", "", "In this aerial image, ", "Looking at this scene from above, ",
             "From this overhead view, ", "In this picture, ")


def banned_terms(category: str) -> tuple[str, ...]:
    """Words a question about ``category`` must not contain: its name (with ``_`` as a
    space), its noun and its listed synonyms."""
    c = CATEGORY_BY_NAME[category]
    return tuple(dict.fromkeys((c.name.replace("_", " "), c.noun, *c.banned)))


def names_category(question: str, category: str) -> bool:
    """True when ``question`` contains a banned term of ``category`` as a whole word
    (plural ``s``/``es`` included)."""
    text = question.lower()
    return any(re.search(rf"\b{re.escape(t.lower())}(s|es)?\b", text) for t in banned_terms(category))


# ==========================================================================================
# Drawing machinery
# ==========================================================================================

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
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _noise1d(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    """A smooth 1-D curve of length ``n`` through ``knots`` Gaussian values."""
    small = rng.standard_normal((1, max(2, knots))).astype(np.float32)
    return cv2.resize(small, (n, 1), interpolation=cv2.INTER_CUBIC)[0]


def _ipts(points) -> np.ndarray:
    """Points as the int32 (N, 1, 2) array OpenCV's polygon functions want."""
    return np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)


def _rot(angle_deg: float, v) -> np.ndarray:
    """Rotate vector(s) ``v`` like a sprite rotated by ``angle_deg`` with OpenCV (y down,
    positive angle = counter-clockwise on screen)."""
    a = math.radians(angle_deg)
    r = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return np.asarray(v, dtype=np.float64) @ r.T


def _angle_of(v) -> float:
    """The sprite angle that points a sprite's +x axis along vector ``v``."""
    return math.degrees(math.atan2(-v[1], v[0]))


def _fill(rgb: np.ndarray, lab: np.ndarray, points, colour, code: int) -> None:
    """Fill a polygon in a sprite's colour and label layers."""
    pts = _ipts(points)
    cv2.fillPoly(rgb, [pts], [float(c) for c in colour])
    cv2.fillPoly(lab, [pts], int(code))


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
            k = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
            self._grown[margin] = cv2.dilate((self.lab > 0).astype(np.uint8), k).astype(bool)
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
            self._rgb = cv2.warpAffine(src, self.M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return self._rgb

    def point(self, x: float, y: float) -> np.ndarray:
        """Image coordinates of sprite point (x, y)."""
        return self.M @ np.array([x, y, 1.0]) + np.array([self.x0, self.y0])

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
        M = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        M[0, 2] += (nw - 1) / 2 - (w - 1) / 2
        M[1, 2] += (nh - 1) / 2 - (h - 1) / 2
        lab_r = cv2.warpAffine(lab, M, (nw, nh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if anchor is None:
            anchor = ((w - 1) / 2, (h - 1) / 2)
        ax, ay = M @ np.array([anchor[0], anchor[1], 1.0])
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
        m = mask.astype(np.uint8)
        px, py = abs(dx), abs(dy)
        mp = cv2.copyMakeBorder(m, py, py, px, px, cv2.BORDER_CONSTANT, value=0)
        kernel = np.zeros((py + 1, px + 1), np.uint8)
        ax, ay = max(dx, 0), max(dy, 0)
        cv2.line(kernel, (ax, ay), (ax - dx, ay - dy), 1, 1)
        sh = cv2.dilate(mp, kernel, anchor=(ax, ay)).astype(bool) & ~mp.astype(bool)
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


# ==========================================================================================
# Terrain, water and roads (drawn on the whole image)
# ==========================================================================================

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
    img = cv2.resize(small, (sc.W, sc.H), interpolation=cv2.INTER_LINEAR)
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
    normal = np.array([-d[1], d[0]]) / np.linalg.norm(d)
    offset = bend * np.linalg.norm(d) * _noise1d(rng, n, 4) * np.sin(np.pi * t[:, 0]) ** 0.5
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
        cv2.line(zone, p, q, 1, int(round(w + 2 * bank)))
        cv2.line(river, p, q, 1, int(round(w)))
        cv2.line(channel, p, q, 1, max(1, int(round(w * 0.45))))
    sea = sc.occ == WATER  # the river ends where it meets the sea
    zone = zone.astype(bool) & ~sea
    river = river.astype(bool) & ~sea
    tint = [_rgb(52, 92, 98), _rgb(62, 96, 84), _rgb(44, 78, 108)][int(rng.integers(3))] * rng.uniform(0.9, 1.1)
    sc.paint_mask(zone & ~river, _rgb(150, 140, 105), CTX, SOFT, tex=0.08)
    sc.paint_mask(river, tint, sc.code("river"), WATER, tex=0.04)
    core = channel.astype(bool) & river
    x, y, w, h = cv2.boundingRect(core.astype(np.uint8))
    if w and h:
        sc.img[y:y + h, x:x + w][core[y:y + h, x:x + w]] *= 0.82
    sc.river_mask, sc.river_zone = river, zone
    sc.river_width = float(width.max() + 2 * bank)
    d = np.gradient(path, axis=0)
    sc.river_path, sc.river_tangent = path, d / np.linalg.norm(d, axis=1, keepdims=True)
    sc.instances["river"] += 1


def _road_path(sc: _Scene, rng: np.random.Generator, w: int) -> np.ndarray:
    """An edge-to-edge road that crosses the river (if any) rather than running along it:
    a road nearly parallel to the river would otherwise become one long bridge."""
    for _ in range(8):
        path = _edge_to_edge(sc, rng, n=40, bend=rng.uniform(0.0, 0.1))
        if sc.river_zone is None:
            return path
        test = np.zeros((sc.H, sc.W), np.uint8)
        cv2.polylines(test, [_ipts(path)], False, 1, w)
        over = (test.astype(bool) & sc.river_zone).astype(np.uint8)
        crossings = max(1, cv2.connectedComponents(over)[0] - 1)
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
        cv2.polylines(verge, [pts], False, 1, w + 2 * max(1, w // 5))
        cv2.polylines(road, [pts], False, 1, w)
        if w >= 9:  # a dashed centre line on wide roads
            seg = np.cumsum(np.r_[0, np.linalg.norm(np.diff(path, axis=0), axis=1)])
            dash = max(4.0, w * 0.9)
            samples = np.arange(0, seg[-1], dash)
            xs, ys = np.interp(samples, seg, path[:, 0]), np.interp(samples, seg, path[:, 1])
            for j in range(0, len(samples) - 1, 2):
                cv2.line(dashes, (int(xs[j]), int(ys[j])), (int(xs[j + 1]), int(ys[j + 1])), 1, max(1, w // 10))
    water = sc.occ == WATER
    road_b = road.astype(bool)
    if bridge_wanted:
        deck = cv2.dilate(road, np.ones((3, 3), np.uint8)).astype(bool) & sc.river_zone
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
    x, y, w, h = cv2.boundingRect(deck.astype(np.uint8))
    sub = deck[y:y + h, x:x + w]
    sc.cast_shadow(sub, x, y, target_h)
    sc.paint_mask(deck, _rgb(178, 174, 164), sc.code("bridge"), HARD, tex=0.04)
    rail = deck & ~cv2.erode(deck.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    sc.paint_mask(rail, _rgb(215, 212, 205), sc.code("bridge"), None, tex=0.02)
    n, _ = cv2.connectedComponents(deck.astype(np.uint8))
    sc.instances["bridge"] += n - 1


# ==========================================================================================
# Sprites (drawn axis-aligned, then rotated and placed)
# ==========================================================================================

def _blob_polygon(rng: np.random.Generator, rx: float, ry: float, rough: float, harmonics: int, n: int = 64) -> np.ndarray:
    """A closed irregular outline around the origin (sum of random radial harmonics)."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, harmonics + 1):
        r += rough / k * rng.uniform(0.3, 1.0) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.45, None)
    return np.stack([rx * r * np.cos(th), ry * r * np.sin(th)], axis=1)


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
    cv2.fillPoly(water, [_ipts(poly + c)], 1)
    depth = cv2.distanceTransform(water, cv2.DIST_L2, 3)
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
    cv2.fillPoly(lab, [_ipts(poly + size / 2)], LABEL_IDS["forest"])
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
    rows = np.sin(2 * np.pi * axis / row_period + rng.uniform(0, 6.3))
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
        k = 0.22 * float(face @ light)
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
        cv2.ellipse(rgb, (int(round(ex)), int(round(ey))), (max(1, int(0.05 * L)), max(1, int(0.022 * L))),
                    0, 0, 360, (150.0, 152.0, 156.0), -1)
        cv2.ellipse(lab, (int(round(ex)), int(round(ey))), (max(1, int(0.05 * L)), max(1, int(0.022 * L))),
                    0, 0, 360, code, -1)
    # fuselage: tapered tail, straight body, rounded nose
    _fill(rgb, lab, [(x0, cy - fw * 0.3), (x0 + 0.12 * L, cy - fw), (x0 + 0.9 * L, cy - fw),
                     (x0 + L, cy), (x0 + 0.9 * L, cy + fw), (x0 + 0.12 * L, cy + fw), (x0, cy + fw * 0.3)], body, code)
    livery = [_rgb(180, 40, 40), _rgb(40, 70, 160), _rgb(230, 150, 40), _rgb(60, 60, 64)][int(rng.integers(4))]
    cv2.line(rgb, (int(x0), int(round(cy))), (int(x0 + 0.14 * L), int(round(cy))), [float(v) for v in livery], max(1, int(fw * 0.6)))
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
        cv2.rectangle(rgb, (int(x0 + 0.3 * L), int(cy - beam * 0.25)), (int(x0 + 0.55 * L), int(cy + beam * 0.25)), (245.0, 245.0, 245.0), -1)
    else:
        deck_col = [_rgb(120, 112, 100), _rgb(150, 60, 50), _rgb(80, 110, 80)][int(rng.integers(3))]
        _fill(rgb, lab, deck, deck_col, code)
        if kind == 1:  # container stacks
            bay = max(2, int(L * 0.07))
            for bx in range(int(x0 + 0.25 * L), int(x0 + 0.78 * L) - bay, bay + 1):
                col = [(180.0, 60.0, 50.0), (60.0, 100.0, 160.0), (200.0, 170.0, 60.0), (90.0, 140.0, 90.0)][int(rng.integers(4))]
                cv2.rectangle(rgb, (bx, int(cy - beam * 0.32)), (bx + bay - 1, int(cy + beam * 0.32)), col, -1)
        else:  # tanker: a pipe line along the deck
            cv2.line(rgb, (int(x0 + 0.22 * L), int(round(cy))), (int(x0 + 0.85 * L), int(round(cy))), (210.0, 200.0, 180.0), max(1, int(beam * 0.1)))
        cv2.rectangle(rgb, (int(x0 + 0.04 * L), int(cy - beam * 0.38)), (int(x0 + 0.2 * L), int(cy + beam * 0.38)), (240.0, 240.0, 236.0), -1)
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
        cv2.rectangle(rgb, (int(x), int(round(cy - t / 2))), (int(x + dash), int(round(cy + t / 2))), paint, -1)
        x += dash + gap
    stripes = 8
    sw = max(1, int(round(w * 0.05)))
    for end in (0, 1):
        xa = w * 0.25 if end == 0 else ww - w * 0.25 - w * 1.4
        for k in range(stripes):
            yk = 3 * t + (k + 0.5) * (hh - 6 * t) / stripes
            if abs(yk - cy) < sw * 1.5:
                continue
            cv2.rectangle(rgb, (int(xa), int(yk - sw / 2)), (int(xa + w * 1.4), int(yk + sw / 2)), paint, -1)
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
        cv2.rectangle(rgb, (int(cx - half_l), int(cy - half_w)), (int(cx + half_l), int(cy + half_w)), white, lw)
        cv2.line(rgb, (int(cx), int(cy - half_w)), (int(cx), int(cy + half_w)), white, lw)
        cv2.circle(rgb, (int(cx), int(cy)), max(2, int(half_w * 0.3)), white, lw)
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
    cv2.rectangle(rgb, (m, m), (ww - 1 - m, hh - 1 - m), white, lw)
    cv2.line(rgb, (cx, m), (cx, hh - 1 - m), white, lw)
    cv2.circle(rgb, (cx, cy), max(2, int(L * 0.087)), white, lw)
    bd, bw = int(L * 0.157), int(W * 0.59 / 2)
    for x_edge, sgn in ((m, 1), (ww - 1 - m, -1)):
        cv2.rectangle(rgb, (x_edge, cy - bw), (x_edge + sgn * bd, cy + bw), white, lw)
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
        cv2.rectangle(rgb, (x1, y1), (x2, y2), [float(v) for v in surface], -1)
        cv2.rectangle(rgb, (x1, y1), (x2, y2), white, 1)
        inset = max(1, int(round(Wc * 0.125)))
        cv2.line(rgb, (x1, y1 + inset), (x2, y1 + inset), white, 1)
        cv2.line(rgb, (x1, y2 - inset), (x2, y2 - inset), white, 1)
        cx = (x1 + x2) // 2
        sl = int(Lc * 0.27)
        cv2.line(rgb, (cx - sl, y1 + inset), (cx - sl, y2 - inset), white, 1)
        cv2.line(rgb, (cx + sl, y1 + inset), (cx + sl, y2 - inset), white, 1)
        cv2.line(rgb, (cx - sl, (y1 + y2) // 2), (cx + sl, (y1 + y2) // 2), white, 1)
        cv2.line(rgb, (cx, y1 - 1), (cx, y2 + 1), (40.0, 40.0, 40.0), 1)
        if k > 0:  # fence between neighbouring courts
            cv2.line(rgb, (0, int(k * cell_h)), (rgb.shape[1] - 1, int(k * cell_h)), (70.0, 80.0, 70.0), 1)
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
        cv2.line(rgb, (int(x), int(y)), (int(ww - width * 0.5), int(y)), (220.0, 220.0, 214.0), 1)
        while x + width <= ww - width * 0.5:
            cv2.line(rgb, (int(x), int(y)), (int(x), int(y + depth)), (220.0, 220.0, 214.0), 1)
            if rng.random() < fill:
                cl = cars[int(rng.integers(len(cars)))]
                cx1, cx2 = int(x + width * 0.2), int(x + width * 0.8)
                cy1, cy2 = int(y + depth * 0.12), int(y + depth * 0.88)
                cv2.rectangle(rgb, (cx1, cy1), (cx2, cy2), cl, -1)
                wy = cy1 + (cy2 - cy1) // 3
                cv2.line(rgb, (cx1, wy), (cx2, wy), (30.0, 34.0, 40.0), 1)
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
    arch = 1 + 0.1 * np.cos(np.linspace(-np.pi / 2, np.pi / 2, hh) + rng.uniform(-0.5, 0.5))
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
        cv2.ellipse(rgb, (ww // 2, hh // 2), (ww // 2, hh // 2), 0, 0, 360, coping, -1)
        cv2.ellipse(lab, (ww // 2, hh // 2), (ww // 2, hh // 2), 0, 0, 360, code, -1)
    else:
        rgb[:] = coping
        lab[:] = code
    c = max(1, int(round(min(ww, hh) * 0.12)))
    water = np.zeros((hh, ww), np.uint8)
    if lab[0, 0] == 0:  # oval pool (its corners are transparent)
        cv2.ellipse(water, (ww // 2, hh // 2), (max(1, ww // 2 - c), max(1, hh // 2 - c)), 0, 0, 360, 1, -1)
    else:
        cv2.rectangle(water, (c, c), (ww - 1 - c, hh - 1 - c), 1, -1)
    t = np.linspace(0, 1, ww, dtype=np.float32)[None, :, None]
    shallow, deep = _rgb(96, 204, 226), _rgb(44, 148, 204)
    grad = shallow * (1 - t) + deep * t
    wm = water.astype(bool)
    rgb[wm] = np.broadcast_to(grad, rgb.shape)[wm]
    return rgb, lab


# ==========================================================================================
# Sites: each places a category's instances and returns how many it placed
# ==========================================================================================

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
        cv2.rectangle(rgb, (0, 0), (lab.shape[1] - 1, lab.shape[0] - 1), (196.0, 192.0, 184.0), 1)
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
            cv2.rectangle(rgb, (int(L * 0.08), int(ty)), (int(L * 0.92), int(ty + tw)), [float(v) for v in concrete], -1)
            for xc in (L * 0.08, L * 0.5, L * 0.92 - tw):  # connectors runway <-> taxiway
                cv2.rectangle(rgb, (int(xc), int(w)), (int(xc + tw), int(ty)), [float(v) for v in concrete], -1)
            cv2.line(rgb, (int(L * 0.08), int(ty + tw / 2)), (int(L * 0.92), int(ty + tw / 2)), (200.0, 170.0, 60.0), 1)
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
    cv2.fillPoly(m, [_ipts(poly - [x0, y0])], 1)
    core = np.zeros_like(m)
    cv2.fillPoly(core, [_ipts(np.array([stern + side * beam * 0.3, stern + (far - stern) * 0.6,
                                        stern - side * beam * 0.3]) - [x0, y0])], 1)
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


# ==========================================================================================
# One image
# ==========================================================================================

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
    closed under :data:`REQUIRES`; an empty image draws nothing that needs the asked one."""
    excluded = {target} | ({c for c, deps in REQUIRES.items() if target in deps} if empty else set())
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
    # add the grain and round/saturate to uint8 in one OpenCV pass
    img = cv2.add(sc.img, grain, dtype=cv2.CV_8U)
    # colour balance and haze are per-channel maps of 0..255: one lookup table
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(levels * gain * (1 - haze) + haze * np.array([200.0, 205.0, 215.0]) + 0.5, 0, 255)
    img = cv2.LUT(img, lut.astype(np.uint8).reshape(1, 256, 3))
    # blur last, in uint8 (three times cheaper than in float): softens drawn edges like optics
    return cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(0.5, 0.85))


def _questions(rng: np.random.Generator, category: str, instances: int, empty: bool) -> tuple[list[str], list[str]]:
    cat = CATEGORY_BY_NAME[category]
    lo, hi = QUESTIONS_PER_IMAGE
    k = int(rng.integers(lo, min(hi, len(cat.qa)) + 1))
    picks = rng.choice(len(cat.qa), size=k, replace=False)
    questions, answers = [], []
    noun = cat.noun if instances == 1 else cat.plural
    for i in picks:
        q, why = cat.qa[int(i)]
        prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
        questions.append(prefix + q[0].lower() + q[1:] if prefix else q)
        answers.append(f"The {noun}, {why}.")
    return questions, ([] if empty else answers)


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


# ==========================================================================================
# Writing datasets
# ==========================================================================================

def _write_sample(base: Path, s: SyntheticSample) -> None:
    """One image's three files. Pillow writes no timestamps or metadata, so the bytes
    depend only on the pixels."""
    Image.fromarray(s.image).save(base / "images" / f"{s.image_id}.jpg", format="JPEG",
                                  quality=JPEG_QUALITY, subsampling=2, optimize=False, progressive=False)
    Image.fromarray(s.mask.astype(np.uint8) * 255).save(base / "labels" / f"{s.image_id}.png", format="PNG",
                                                        optimize=False, compress_level=6)
    (base / "QAs" / f"{s.image_id}.json").write_text(json.dumps(s.qa, indent=1, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")


def _write_dataset(root: Path, sizes: Mapping[str, int], seed: int) -> None:
    """Write every split of ``sizes`` and the manifest under ``root`` (which exists)."""
    for split, n in sizes.items():
        base = root / split
        for sub in ("images", "labels", "QAs"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _write_sample(base, render_sample(seed, split, i))
    manifest = {
        "generator": "think2seg-synthetic",
        "version": GENERATOR_VERSION,
        "source_sha256": source_fingerprint(),
        "seed": seed,
        "splits": dict(sizes),
        "categories": list(CATEGORY_NAMES),
        "layout": "<split>/images/<id>.jpg, <split>/labels/<id>.png, <split>/QAs/<id>.json",
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _build_in_temp(parent: Path, name: str, sizes: Mapping[str, int], seed: int, what: str) -> Path:
    """Generate into a fresh hidden sibling folder; on any failure remove it and raise."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent))
    except OSError as exc:
        raise DatasetError(f"cannot write to {parent / name}: {exc.strerror or exc}; {what}") from None
    try:
        _write_dataset(tmp, sizes, seed)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"cannot write to {parent / name}: {exc.strerror or exc}; {what}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``, replacing an existing ``out`` (renamed aside first, so a
    reader never sees a half-deleted folder)."""
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, trash / out.name)
        os.rename(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _validate(n, seed, splits) -> tuple[int, int, list[str]]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"--n must be a whole number of images per split, at least 1; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer; got {seed!r}")
    if isinstance(splits, str):
        splits = splits.split(",")
    names = [s.strip() for s in splits if s and s.strip()]
    if not names:
        raise ConfigError(f"--splits names no split; use a comma-separated subset of {','.join(SPLITS)}")
    unknown = [s for s in names if s not in _SPLIT_CODES]
    if unknown:
        raise ConfigError(f"unknown split {unknown[0]!r} in --splits; valid: {', '.join(SPLITS)} (comma-separated)")
    return int(n), int(seed), list(dict.fromkeys(names))


#: what a folder may hold for ``overwrite=True`` to replace it (a safety net against
#: ``--overwrite`` pointed at a folder that is not a dataset)
_REPLACEABLE = {"train", "val", "test", MANIFEST}


def generate(out: str | Path, n: int = 200, seed: int = 0, splits: Sequence[str] = SPLITS,
             overwrite: bool = False) -> dict[str, int]:
    """Write ``n`` images per split to ``out`` in the EarthReason layout; returns
    ``{split: images written}``.

    The set is generated in a hidden sibling folder and renamed into place at the end, so
    an error or interruption never leaves a half-written ``out``. An existing non-empty
    ``out`` is replaced only with ``overwrite=True``, and only when it looks like a
    dataset (nothing but ``train/ val/ test/`` and ``synthetic.json``).

    Raises :class:`ConfigError` for a bad ``n``, ``seed`` or split name or an occupied
    ``out``, and :class:`DatasetError` when ``out`` cannot be written.
    """
    n, seed, names = _validate(n, seed, splits)
    out = Path(out).expanduser()
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder; choose a folder path")
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite to replace it or choose another folder")
        foreign = [e for e in entries if e not in _REPLACEABLE]
        if foreign:
            raise ConfigError(f"refusing to replace {out}: it holds {foreign[0]!r}, which is not part of a dataset; "
                              "remove the folder yourself or choose another --out")
    out = out.absolute()
    tmp = _build_in_temp(out.parent, out.name, {s: n for s in names}, seed, "choose a folder you can write to")
    try:
        _replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"cannot write to {out}: {exc.strerror or exc}; choose a folder you can write to") from None
    return {s: n for s in names}


# -- the embedded default set ---------------------------------------------------------------

def cache_dir() -> Path:
    """``$T2S_CACHE_DIR`` if set, else ``~/.cache/think2seg``."""
    env = os.environ.get("T2S_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "think2seg"


def source_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of this module's source. The cache folder is named
    after :data:`GENERATOR_VERSION`; the fingerprint in its manifest also catches an edit
    made without bumping the version (a cache written by a development copy)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return _FINGERPRINT


_FINGERPRINT: str | None = None


def _is_complete(root: Path, sizes: Mapping[str, int], seed: int) -> bool:
    """A cached set is complete and current when its manifest (written last, before the
    atomic rename) matches what this generator would write."""
    try:
        m = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("version") == GENERATOR_VERSION and m.get("seed") == seed \
        and m.get("splits") == dict(sizes) and m.get("source_sha256") == source_fingerprint()


def ensure_dataset(root: str | Path, sizes: Mapping[str, int], seed: int) -> Path:
    """Return ``root``, generating the set there first if it is not complete.

    Generation goes to a temporary sibling renamed atomically into place; when another
    process wins the race to create ``root``, its copy is used and ours discarded. A stale
    incomplete folder at ``root`` is replaced."""
    root = Path(root).expanduser().absolute()
    if _is_complete(root, sizes, seed):
        return root
    sys.stderr.write(f"t2s: generating the synthetic dataset in {root} (one-time, about "
                     f"{max(1, sum(sizes.values()) // 20)} s)\n")
    fix = "set T2S_CACHE_DIR to a writable folder"
    tmp = _build_in_temp(root.parent, root.name, sizes, seed, fix)
    try:
        os.rename(tmp, root)
        return root
    except OSError:
        pass
    try:
        if _is_complete(root, sizes, seed):  # lost the race: use the winner's copy
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        _replace_dir(tmp, root)  # a stale or partial folder from elsewhere
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(root, sizes, seed):
            return root
        raise DatasetError(f"cannot write the synthetic dataset to {root}: {exc.strerror or exc}; {fix}") from None
    return root


def embedded_root() -> Path:
    """The embedded default dataset (train 120, val 40, test 40 images, seed 0), generated
    on first use into ``<cache>/synthetic-<version>-seed<seed>`` (see :func:`cache_dir`)."""
    root = cache_dir() / f"synthetic-{GENERATOR_VERSION}-seed{EMBEDDED_SEED}"
    return ensure_dataset(root, EMBEDDED_SIZES, EMBEDDED_SEED)


__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "EMBEDDED_SIZES",
    "GENERATOR_VERSION",
    "SyntheticSample",
    "banned_terms",
    "cache_dir",
    "embedded_root",
    "ensure_dataset",
    "generate",
    "image_id",
    "source_fingerprint",
    "names_category",
    "planned_target",
    "render_sample",
]
