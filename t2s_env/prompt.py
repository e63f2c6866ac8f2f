"""`GeometricPrompt`: the boxes and points an agent hands to the segmenter.

Coordinate convention (used everywhere in Think2Seg): absolute pixel coordinates in the
image the agent saw, continuous, origin at the top-left corner of the top-left pixel.
A box is ``[x1, y1, x2, y2]`` with ``x2, y2`` the right and bottom *edges*, so pixel
column ``c`` (centre ``c + 0.5``) lies inside when ``x1 <= c + 0.5 <= x2``: an integer box
covers columns ``x1 … x2-1``, and the tight box of a mask component spanning columns
``a … b`` is ``[a, ·, b+1, ·]``. A point ``[x, y]`` is a position in the same frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class GeometricPrompt:
    """The prompt for one target instance: an optional box plus positive/negative points."""

    box: Box | None = None
    positive_points: tuple[Point, ...] = field(default_factory=tuple)
    negative_points: tuple[Point, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Normalise containers so that equal prompts compare and hash equal.
        if self.box is not None:
            object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(
            self, "positive_points", tuple((float(x), float(y)) for x, y in self.positive_points)
        )
        object.__setattr__(
            self, "negative_points", tuple((float(x), float(y)) for x, y in self.negative_points)
        )

    @classmethod
    def of_floats(cls, box: "Box | None", positive_points: tuple, negative_points: tuple) -> "GeometricPrompt":
        """Construct without normalising: the caller passes tuples of Python floats (the
        parser's hot path builds thousands of prompts per second)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "box", box)
        object.__setattr__(obj, "positive_points", positive_points)
        object.__setattr__(obj, "negative_points", negative_points)
        return obj

    @property
    def is_empty(self) -> bool:
        return self.box is None and not self.positive_points and not self.negative_points

    @property
    def signature(self) -> tuple[bool, int, int]:
        """(has box, #positive, #negative): prompts with equal signatures batch together."""
        return (self.box is not None, len(self.positive_points), len(self.negative_points))

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        """The protocol's JSON object (``bbox_2d``, ``positive_points``, ``negative_points``),
        non-integer coordinates rounded to ``decimals``."""
        out: dict[str, Any] = {}
        if self.box is not None:
            out["bbox_2d"] = [_compact(v, decimals) for v in self.box]
        if self.positive_points:
            out["positive_points"] = [[_compact(x, decimals), _compact(y, decimals)] for x, y in self.positive_points]
        if self.negative_points:
            out["negative_points"] = [[_compact(x, decimals), _compact(y, decimals)] for x, y in self.negative_points]
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "GeometricPrompt":
        """Inverse of :meth:`to_dict`; also accepts ``box`` as an alias of ``bbox_2d``."""
        box = obj.get("bbox_2d", obj.get("box"))
        return cls(
            box=tuple(box) if box is not None else None,
            positive_points=tuple(tuple(p) for p in obj.get("positive_points") or ()),
            negative_points=tuple(tuple(p) for p in obj.get("negative_points") or ()),
        )

    def clipped(self, width: int, height: int) -> "GeometricPrompt":
        """Coordinates clipped into the image; a box with x1 > x2 (or y1 > y2) is reordered."""
        box = None
        w, h = float(width), float(height)
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if x2 < x1:
                x1, x2 = x2, x1
            if y2 < y1:
                y1, y2 = y2, y1
            box = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
        return GeometricPrompt.of_floats(
            box,
            tuple((min(max(x, 0.0), w), min(max(y, 0.0), h)) for x, y in self.positive_points),
            tuple((min(max(x, 0.0), w), min(max(y, 0.0), h)) for x, y in self.negative_points),
        )

    def scaled(self, sx: float, sy: float) -> "GeometricPrompt":
        """Coordinates multiplied by (sx, sy): maps prompts between image resolutions."""
        box = None
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        return GeometricPrompt(
            box=box,
            positive_points=tuple((x * sx, y * sy) for x, y in self.positive_points),
            negative_points=tuple((x * sx, y * sy) for x, y in self.negative_points),
        )


def anchor(prompt: GeometricPrompt) -> tuple:
    """What identifies an instance from one refinement turn to the next: its box, else its first
    positive point, else its first negative point (``()`` for an empty prompt). An instance of a
    new answer with the same anchor as one of the previous answer refines it."""
    if prompt.box is not None:
        return ("box", *prompt.box)
    if prompt.positive_points:
        return ("pos", *prompt.positive_points[0])
    if prompt.negative_points:
        return ("neg", *prompt.negative_points[0])
    return ()


def _clip(v: float, hi: int) -> float:
    return min(max(v, 0.0), float(hi))


def _compact(v: float, decimals: int = 2) -> int | float:
    """Integers print as integers (the protocol's examples do), other values as floats."""
    return int(v) if float(v).is_integer() else round(float(v), decimals)


def box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) xyxy boxes -> (N, N); 0 where the union is empty."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(b[:, None, 0], b[None, :, 0])
    y1 = np.maximum(b[:, None, 1], b[None, :, 1])
    x2 = np.minimum(b[:, None, 2], b[None, :, 2])
    y2 = np.minimum(b[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area[:, None] + area[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def signed_box_area(box: Sequence[float]) -> float:
    """Upstream's box area, ``(x2 - x1) * (y2 - y1)``: negative for one reversed pair of corners."""
    return (box[2] - box[0]) * (box[3] - box[1])


#: Up to this many boxes, duplicate removal runs in plain Python (numpy's per-call
#: overhead dominated the parser on the usual 1–3 boxes); up to _MATRIX_NMS, on one
#: pairwise IoU matrix (≤ 2 MB); beyond, one row at a time (O(N) memory).
_SMALL_NMS = 20
_MATRIX_NMS = 512


def deduplicate(
    prompts: Sequence[GeometricPrompt], iou_threshold: float = 0.5, *, signed_area: bool = False
) -> list[GeometricPrompt]:
    """Upstream's duplicate-box removal (NMS without scores).

    Boxed instances are ranked by area, largest first (ties keep answer order); a box whose
    IoU with an already kept box exceeds ``iou_threshold`` is dropped. Instances without a
    box are always kept. The surviving instances keep their original order.

    Areas are clipped at zero (boxes with ordered corners); ``signed_area=True`` uses
    upstream's unclipped ``(x2-x1)·(y2-y1)`` for the ranking and the IoU's union, which is
    what upstream computes on raw boxes (reversed corners give negative areas). The
    intersection is clipped at zero in both.
    """
    boxed = [i for i, p in enumerate(prompts) if p.box is not None]
    if len(boxed) <= 1:
        return list(prompts)
    boxes = [prompts[i].box for i in boxed]
    area_of = signed_box_area if signed_area else box_area
    neg_areas = [-area_of(b) for b in boxes]
    ranks = sorted(range(len(boxed)), key=neg_areas.__getitem__)  # sorted() is stable
    if len(ranks) <= _SMALL_NMS:
        dropped = _suppressed_small([boxes[r] for r in ranks], [-neg_areas[r] for r in ranks], iou_threshold)
    elif len(ranks) <= _MATRIX_NMS:
        dropped = _suppressed_matrix([boxes[r] for r in ranks], signed_area, iou_threshold)
    else:
        dropped = _suppressed_numpy([boxes[r] for r in ranks], signed_area, iou_threshold)
    if not dropped:
        return list(prompts)
    gone = {boxed[ranks[k]] for k in dropped}
    return [p for i, p in enumerate(prompts) if i not in gone]


def _suppressed_small(boxes: list, areas: list, iou_threshold: float) -> list[int]:
    """Ranks suppressed by greedy NMS, in Python floats (the same IEEE operations as
    :func:`_suppressed_numpy`, so the same decisions)."""
    n = len(boxes)
    alive = [True] * n
    for a in range(n):
        if not alive[a]:
            continue
        ax1, ay1, ax2, ay2 = boxes[a]
        aa = areas[a]
        for r in range(a + 1, n):
            if not alive[r]:
                continue
            bx1, by1, bx2, by2 = boxes[r]
            w = max((bx2 if bx2 < ax2 else ax2) - (bx1 if bx1 > ax1 else ax1), 0.0)
            h = max((by2 if by2 < ay2 else ay2) - (by1 if by1 > ay1 else ay1), 0.0)
            inter = w * h
            union = aa + areas[r] - inter
            if union > 0 and inter / union > iou_threshold:
                alive[r] = False
    return [k for k in range(n) if not alive[k]]


def _suppressed_matrix(boxes: list, signed_area: bool, iou_threshold: float) -> list[int]:
    """:func:`_suppressed_numpy` with every pair's IoU computed at once (the same
    element-wise operations, so the same decisions)."""
    b = np.array(boxes, dtype=np.float64)
    dw, dh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        area = dw * dh if signed_area else np.clip(dw, 0, None) * np.clip(dh, 0, None)
        w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
        h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
        inter = w * h
        union = area[:, None] + area[None, :] - inter
        over = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0) > iou_threshold
    alive = np.ones(len(b), dtype=bool)
    for a in np.flatnonzero(over.any(1)).tolist():  # only boxes that overlap some other
        if alive[a]:
            alive[a + 1 :] &= ~over[a, a + 1 :]
    return np.flatnonzero(~alive).tolist()


def _suppressed_numpy(boxes: list, signed_area: bool, iou_threshold: float) -> list[int]:
    b = np.array(boxes, dtype=np.float64)
    dw, dh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    with np.errstate(over="ignore", invalid="ignore"):
        area = dw * dh if signed_area else np.clip(dw, 0, None) * np.clip(dh, 0, None)
    # Greedy suppression one kept box at a time: O(N) memory (a full N×N IoU matrix of a
    # degenerate answer with thousands of boxes would take gigabytes).
    alive = np.ones(len(b), dtype=bool)
    for a in range(len(b)):
        if not alive[a]:
            continue
        rest = np.flatnonzero(alive[a + 1 :]) + a + 1
        if rest.size == 0:
            break
        w = np.clip(np.minimum(b[a, 2], b[rest, 2]) - np.maximum(b[a, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[a, 3], b[rest, 3]) - np.maximum(b[a, 1], b[rest, 1]), 0, None)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            inter = w * h
            union = area[a] + area[rest] - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        alive[rest[iou > iou_threshold]] = False
    return np.flatnonzero(~alive).tolist()


def is_finite_number(v: Any) -> bool:
    """A JSON number usable as a coordinate (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def prompts_from_any(action: Any) -> list[GeometricPrompt]:
    """Structured actions: a GeometricPrompt, a dict, or an iterable of either."""
    if isinstance(action, GeometricPrompt):
        return [action]
    if isinstance(action, dict):
        return [GeometricPrompt.from_dict(action)]
    if isinstance(action, Iterable):
        return [a if isinstance(a, GeometricPrompt) else GeometricPrompt.from_dict(a) for a in action]
    raise TypeError(f"cannot turn {type(action).__name__} into geometric prompts")
