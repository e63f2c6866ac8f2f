"""The COCO mask codec: run-length encodings and polygons as (H, W) bool masks, checked.

RRSIS-D stores its masks as COCO ``segmentation`` values in ``instances.json``. pycocotools
decodes any bytes without a check (garbage becomes a wrong mask, a negative count a wild
write, a huge polygon coordinate a crash in its 32-bit rasterizer), so everything is
validated here before pycocotools sees it; malformed values raise ValueError (or
TypeError), and a :class:`CocoMask` that cannot be decoded raises :class:`DatasetError`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import DatasetError
from .base import short_repr


@dataclass(frozen=True)
class CocoMask:
    """Reference to one COCO annotation's mask, held as a single compressed RLE.

    Equality and hashing use ``(source, ann_id)``; ``str()`` names the annotation, so error
    messages that print a sample's ``mask_ref`` stay one readable line.
    """

    source: str
    ann_id: Any
    rle: dict = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.source} (annotation id {self.ann_id})"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the mask."""
        h, w = self.rle["size"]
        return int(w), int(h)


#: Largest mask side accepted from an annotation file (EarthReason's largest image side
#: is 7,617 px): bigger sizes are corrupt values, and decoding them would exhaust memory.
MAX_MASK_SIDE = 100_000


def _check_size(size: Any) -> tuple[int, int]:
    """An RLE ``size`` as (height, width) of positive ints, else ValueError."""
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"an RLE size must be [height, width], got {short_repr(size, 40)}")
    out = []
    for v in size:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v != int(v):
            raise ValueError(f"an RLE size must hold two whole numbers, got {short_repr(size, 40)}")
        if not 0 < int(v) <= MAX_MASK_SIDE:
            raise ValueError(f"RLE size {short_repr(size, 40)} is outside 1..{MAX_MASK_SIDE} per side")
        out.append(int(v))
    return out[0], out[1]


def rle_string_counts(counts: bytes | str) -> np.ndarray:
    """The run lengths held in a compressed COCO RLE string, checked, as int64.

    The format (pycocotools' ``rleToString``): each count is a little-endian run of 5-bit
    groups stored as ``chr(48 + group)``, bit 0x20 meaning "more groups follow" and bit
    0x10 of the last group the sign; from the fourth count on, each is stored as the
    difference from the count two places before. pycocotools decodes any bytes without a
    check, so garbage becomes a wrong mask and a negative count a wild write; here anything
    that is not a well-formed string raises ValueError.
    """
    raw = counts.encode("latin-1") if isinstance(counts, str) else bytes(counts)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        bad = raw[int(np.flatnonzero((c < 0) | (c > 63))[0])]
        raise ValueError(f"its RLE counts string holds the byte {bytes([bad])!r}, outside the format's '0'..'o'")
    last = (c & 0x20) == 0  # the last group of each count
    if not last[-1]:
        raise ValueError("its RLE counts string is truncated (the last count is unfinished)")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 35 bits: far beyond any mask's pixel count
        raise ValueError("its RLE counts string holds a count too large for any mask")
    count_of = np.repeat(np.arange(len(ends)), lengths)
    shift = 5 * (np.arange(c.size) - starts[count_of])
    values = np.zeros(len(ends), dtype=np.int64)
    np.add.at(values, count_of, (c & 0x1F) << shift)
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.left_shift(np.int64(1), 5 * lengths[negative])
    # undo the delta coding: counts 3, 5, 7, ... and 4, 6, 8, ... (1-based) are running sums
    values[1::2] = np.cumsum(values[1::2])
    values[2::2] = np.cumsum(values[2::2])
    return values


def _check_counts(counts: np.ndarray, height: int, width: int) -> None:
    if counts.size and counts.min() < 0:
        raise ValueError(f"its RLE holds a negative count ({int(counts.min())})")
    total = int(counts.sum())
    if total != height * width:
        raise ValueError(
            f"its RLE counts cover {total} pixels but its size {height}x{width} has {height * width}"
        )


def decode_rle(rle: dict) -> np.ndarray:
    """A compressed COCO RLE dict as an (H, W) bool array, checked first (ValueError)."""
    height, width = _check_size(rle.get("size") if isinstance(rle, dict) else None)
    counts = rle_string_counts(rle["counts"])
    _check_counts(counts, height, width)
    values = np.arange(counts.size, dtype=np.uint8) & 1  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values.astype(bool), counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)  # COCO runs go down columns


def decode_coco_mask(ref: CocoMask) -> np.ndarray:
    """A :class:`CocoMask` as an (H, W) bool array (the ``mask_reader`` of RRSIS-D)."""
    try:
        return decode_rle(ref.rle)
    except (ValueError, TypeError, KeyError) as exc:
        raise DatasetError(f"cannot decode the mask of {ref}: {exc}; fix or remove that annotation") from None


def _check_polygon(part: Sequence[Any], height: int, width: int) -> list[float]:
    """A polygon's coordinates as floats, else ValueError: non-finite values, or vertices
    more than one image size outside the frame. pycocotools rasterizes in 32-bit
    integers at 5x scale, and a coordinate near 5e8, or NaN, crashes the process there.
    Vertices a little outside the frame are kept: annotation tools write them, and the
    rasterizer clips them."""
    values = [float(v) for v in part]
    for k, v in enumerate(values):
        side = width if k % 2 == 0 else height
        if not math.isfinite(v):
            raise ValueError(f"polygon coordinate {k} is {v}")
        if not -side <= v <= 2 * side:
            raise ValueError(
                f"polygon coordinate {k} is {v:g}, more than one image size outside the {width}x{height} frame"
            )
    return values


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """A COCO ``segmentation`` (RLE dict, uncompressed RLE, a list of RLEs, or polygons)
    as one compressed RLE of their union. Everything is checked before pycocotools sees
    it; raises ValueError (or TypeError) on anything malformed."""
    from pycocotools import mask as cocomask

    height, width = _check_size([height, width])
    seg = segmentation
    if isinstance(seg, dict):
        parts: list = [seg]
    elif isinstance(seg, (list, tuple)):
        parts = list(seg)
        if parts and all(_is_number(v) for v in parts):
            parts = [parts]  # one flat polygon
    else:
        raise ValueError(f"segmentation must be an RLE dict or a list, not {type(seg).__name__}")
    rles: list[dict] = []
    polygons: list[list[float]] = []
    for part in parts:
        if isinstance(part, dict):
            if "counts" not in part or "size" not in part:
                raise ValueError("an RLE needs 'counts' and 'size'")
            ph, pw = _check_size(part["size"])
            counts = part["counts"]
            if isinstance(counts, list):
                if not all(_is_number(v) and math.isfinite(v) and v == int(v) for v in counts):
                    raise ValueError("uncompressed RLE counts must be whole numbers")
                values = np.array([int(v) for v in counts], dtype=np.int64) if counts else np.zeros(0, np.int64)
                _check_counts(values, ph, pw)
                rles.append(cocomask.frPyObjects({"size": [ph, pw], "counts": [int(v) for v in counts]}, ph, pw))
            elif isinstance(counts, (str, bytes)):
                data = counts.encode("latin-1") if isinstance(counts, str) else counts
                _check_counts(rle_string_counts(data), ph, pw)
                rles.append({"size": [ph, pw], "counts": data})
            else:
                raise ValueError(f"RLE counts must be a string or a list, not {type(counts).__name__}")
        elif isinstance(part, (list, tuple)) and all(_is_number(v) for v in part):
            if len(part) % 2:
                raise ValueError(f"a polygon needs an even number of coordinates, got {len(part)}")
            if len(part) >= 6:  # shorter ones have no area (and pycocotools would read 4 as a box)
                polygons.append(_check_polygon(part, height, width))
        else:
            raise ValueError("segmentation parts must be RLE dicts or polygons (lists of numbers)")
    if polygons:
        rles.extend(cocomask.frPyObjects(polygons, height, width))
    if not rles:
        return cocomask.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
    sizes = {tuple(r["size"]) for r in rles}
    if len(sizes) > 1:
        raise ValueError(f"its parts have different sizes {sorted(sizes)}")
    return rles[0] if len(rles) == 1 else cocomask.merge(rles, intersect=False)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


__all__ = [
    "MAX_MASK_SIDE",
    "CocoMask",
    "decode_coco_mask",
    "decode_rle",
    "rle_string_counts",
    "segmentation_to_rle",
]
