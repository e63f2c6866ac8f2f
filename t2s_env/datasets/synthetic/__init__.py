"""Procedural synthetic EarthReason-format dataset (SPEC §7 layout), no download needed.

Each image is a top-down scene drawn with numpy alone (:mod:`t2s_env.raster`: exact integer
and IEEE float64 arithmetic, so the pixels are the same on every machine): a noise-textured terrain,
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

The modules follow the generator's stages: :mod:`.catalogue` (categories and questions),
:mod:`.canvas` (drawing primitives and the scene being drawn), :mod:`.ground` (terrain,
water, roads), :mod:`.sprites` (single objects), :mod:`.sites` (placing a category's
instances), :mod:`.scene` (one image) and :mod:`.writer` (files, manifest, cache).
"""

from .catalogue import (
    CATEGORIES,
    CATEGORY_BY_NAME,
    CATEGORY_NAMES,
    LABEL_IDS,
    QUESTIONS_PER_IMAGE,
    REQUIRES,
    Category,
    banned_terms,
    names_category,
)
from .scene import (
    EMPTY_EVERY,
    GENERATOR_VERSION,
    MAX_ATTEMPTS,
    MAX_SIDE,
    MIN_SIDE,
    SPLITS,
    SyntheticSample,
    image_id,
    planned_target,
    render_sample,
)
from .writer import (
    EMBEDDED_DIGESTS,
    EMBEDDED_SEED,
    EMBEDDED_SIZES,
    JPEG_QUALITY,
    MANIFEST,
    cache_dir,
    data_digest,
    embedded_root,
    ensure_dataset,
    generate,
    source_fingerprint,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "EMBEDDED_DIGESTS",
    "EMBEDDED_SIZES",
    "GENERATOR_VERSION",
    "SyntheticSample",
    "banned_terms",
    "cache_dir",
    "data_digest",
    "embedded_root",
    "ensure_dataset",
    "generate",
    "image_id",
    "source_fingerprint",
    "names_category",
    "planned_target",
    "render_sample",
]
