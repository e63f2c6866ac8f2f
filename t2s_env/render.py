"""Overlays for humans: predicted mask, GT outline and the prompts on the image.

Used by ``env.render()``, the benchmark's TensorBoard grid and training validation.
Colours: prediction tinted blue, GT outlined yellow, boxes red, positive points green,
negative points magenta crosses.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np

PRED_RGB = (30, 144, 255)
GT_RGB = (255, 215, 0)
BOX_RGB = (255, 40, 40)
POS_RGB = (40, 220, 40)
NEG_RGB = (255, 0, 255)


def draw_overlay(
    image: np.ndarray,
    pred_mask: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    prompts: Sequence[Mapping[str, Any]] = (),
    caption: str | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """(H, W, 3) uint8 image with overlays drawn on a copy.

    ``prompts`` are protocol dicts (``bbox_2d``, ``positive_points``, ``negative_points``).
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 300))
    if pred_mask is not None and pred_mask.any():
        tint = np.array(PRED_RGB, dtype=np.float32)
        sel = pred_mask.astype(bool)
        out[sel] = (out[sel] * (1 - alpha) + tint * alpha).astype(np.uint8)
    if gt_mask is not None and gt_mask.any():
        contours, _ = cv2.findContours(gt_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, GT_RGB, thick)
    r = max(3, 2 * thick)
    for p in prompts:
        box = p.get("bbox_2d")
        if box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), BOX_RGB, thick)
        for x, y in p.get("positive_points") or ():
            cv2.circle(out, (int(round(x)), int(round(y))), r, POS_RGB, -1)
        for x, y in p.get("negative_points") or ():
            cv2.drawMarker(out, (int(round(x)), int(round(y))), NEG_RGB, cv2.MARKER_TILTED_CROSS, 3 * r, thick)
    if caption:
        scale = max(0.4, w / 1400)
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (0, 0), (min(w, tw + 8), th + base + 8), (0, 0, 0), -1)
        cv2.putText(out, caption, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def image_grid(tiles: Sequence[np.ndarray], columns: int = 4, tile_size: int = 280) -> np.ndarray:
    """Tiles resized to ``tile_size`` squares, laid out row-major -> (rows·s, cols·s, 3) uint8."""
    if not tiles:
        return np.zeros((tile_size, tile_size, 3), dtype=np.uint8)
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    grid = np.zeros((rows * tile_size, columns * tile_size, 3), dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * tile_size : (r + 1) * tile_size, c * tile_size : (c + 1) * tile_size] = cv2.resize(
            t, (tile_size, tile_size), interpolation=cv2.INTER_AREA
        )
    return grid
