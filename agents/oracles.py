"""Oracle agents: privileged, they read the ground truth from reset info.

An oracle's score is the segmenter's ceiling for that kind of prompt on a dataset: how
well the segmenter does when the prompter is perfect.

- ``oracle-box``: one tight box per connected component (8-connectivity) of the GT.
- ``oracle-points``: points deep inside each component, as many as the variant's
  positive points.
- ``oracle-box+points``: both, plus negative points just outside each component when the
  variant asks for them.

Components are listed largest first, so when the parser caps the instance count the
smallest ones go. An empty GT gives ``[]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from t2s_env import ConfigError, GeometricPrompt, PromptVariant
from t2s_env.raster import distance_transform

from .baselines import PromptAgent


@dataclass(frozen=True)
class Component:
    """One connected component: its tight box ``[x1, y1, x2, y2]`` (x2/y2 exclusive, the
    prompt convention) and its mask cropped to that box."""

    box: tuple[int, int, int, int]
    mask: np.ndarray  # (y2-y1, x2-x1) bool
    area: int


def components(gt: np.ndarray, connectivity: int = 8, min_area: int = 1) -> list[Component]:
    """Connected components of a bool mask, largest first (ties: top-left first)."""
    gt = np.asarray(gt, dtype=bool)
    if not gt.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=connectivity)
    out = []
    for k in range(1, n):  # label 0 is the background
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        out.append(Component((x, y, x + w, y + h), labels[y : y + h, x : x + w] == k, area))
    out.sort(key=lambda c: (-c.area, c.box[1], c.box[0]))
    return out


def spread_points(score: np.ndarray, n: int) -> list[tuple[int, int]]:
    """``n`` pixels (row, col) where ``score > 0``: greedily the one maximising
    ``min(score, distance to the points already chosen)``, so points sit deep inside and
    apart. A region with fewer than ``n`` pixels repeats its points."""
    rows, cols = np.nonzero(score > 0)
    if rows.size == 0 or n <= 0:
        return []
    current = score[rows, cols].astype(np.float64)
    chosen: list[tuple[int, int]] = []
    for _ in range(min(n, rows.size)):
        i = int(np.argmax(current))
        chosen.append((int(rows[i]), int(cols[i])))
        current = np.minimum(current, np.hypot(rows - rows[i], cols - cols[i]))
        current[i] = -1.0
    while len(chosen) < n:
        chosen.append(chosen[len(chosen) % max(1, rows.size)])
    return chosen


def interior_points(comp: Component, n: int) -> tuple[tuple[int, int], ...]:
    """``n`` (x, y) integer pixels inside the component, near maxima of the exact
    Euclidean distance transform."""
    padded = np.pad(comp.mask, 1).astype(np.uint8)  # the crop's border counts as outside
    dist = distance_transform(padded)[1:-1, 1:-1]
    x0, y0 = comp.box[:2]
    return tuple((x0 + c, y0 + r) for r, c in spread_points(dist, n))


def exterior_points(comp: Component, gt: np.ndarray, n: int) -> tuple[tuple[int, int], ...]:
    """``n`` (x, y) background pixels around the component: inside its box grown by a
    margin, away from every GT pixel. Empty when the neighbourhood has no background."""
    h, w = gt.shape
    x1, y1, x2, y2 = comp.box
    margin = max(4, round(0.15 * max(x2 - x1, y2 - y1)))
    X1, Y1, X2, Y2 = max(0, x1 - margin), max(0, y1 - margin), min(w, x2 + margin), min(h, y2 + margin)
    background = (~gt[Y1:Y2, X1:X2]).astype(np.uint8)
    if not background.any():
        return ()
    dist = distance_transform(background)
    return tuple((X1 + c, Y1 + r) for r, c in spread_points(dist, n))


class OracleAgent(PromptAgent):
    """Base of the oracles: one instance per GT component.

    Options: ``prompt_variant`` (point counts), ``n_points`` (overrides the variant's
    positive count), ``min_area`` (ignore components smaller than this many pixels),
    ``connectivity`` (8 or 4).
    """

    privileged = True
    use_box = True
    use_points = True

    def __init__(
        self,
        prompt_variant: "str | PromptVariant" = "bbox+2pos",
        n_points: int | None = None,
        min_area: int = 1,
        connectivity: int = 8,
    ) -> None:
        super().__init__(prompt_variant)
        if connectivity not in (4, 8):
            raise ConfigError(f"{self.name}: connectivity must be 4 or 8, got {connectivity!r}")
        self.n_points = self.variant.n_positive if n_points is None else int(n_points)
        if self.use_points and self.n_points <= 0:
            raise ConfigError(
                f"{self.name} needs positive points, but prompt variant {self.variant.name!r} asks for none; "
                "use a variant with points (e.g. bbox+2pos) or oracle-box"
            )
        self.min_area = int(min_area)
        self.connectivity = connectivity

    def prompts(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> list[GeometricPrompt]:
        if "gt_mask" not in info:
            raise KeyError(f"{self.name} is privileged: it needs info['gt_mask'] (build observations with privileged=True)")
        gt = np.asarray(info["gt_mask"], dtype=bool)
        out = []
        for comp in components(gt, self.connectivity, self.min_area):
            out.append(
                GeometricPrompt(
                    box=comp.box if self.use_box else None,
                    positive_points=interior_points(comp, self.n_points) if self.use_points else (),
                    negative_points=(
                        exterior_points(comp, gt, self.variant.n_negative)
                        if self.use_box and self.use_points and self.variant.n_negative
                        else ()
                    ),
                )
            )
        return out

    def config(self) -> dict[str, Any]:
        cfg = {**super().config(), "min_area": self.min_area, "connectivity": self.connectivity}
        if self.use_points:
            cfg["n_points"] = self.n_points
        return cfg


class OracleBoxAgent(OracleAgent):
    """A tight box per GT component."""

    name = "oracle-box"
    use_points = False


class OraclePointsAgent(OracleAgent):
    """Interior points per GT component, no box."""

    name = "oracle-points"
    use_box = False


class OracleBoxPointsAgent(OracleAgent):
    """Box and interior points (and exterior points if the variant asks) per component."""

    name = "oracle-box+points"


__all__ = [
    "Component",
    "OracleAgent",
    "OracleBoxAgent",
    "OracleBoxPointsAgent",
    "OraclePointsAgent",
    "components",
    "exterior_points",
    "interior_points",
    "spread_points",
]
