"""Overlays for humans: predicted mask, GT outline, the prompts and the question on the image.

Used by ``env.render()``, the benchmark's TensorBoard grid, ``t2s report`` and training
validation. Colours: prediction tinted and outlined blue, GT outlined yellow, boxes red,
positive points green rings, negative points magenta crosses. A sample without a target
(empty GT) says so in a yellow tag. The question, when given, sits in a band at the bottom.
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
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: the question band shows at most this many lines (the last one cut with "...")
QUESTION_LINES = 3
EMPTY_GT_TAG = "GT: no target"


def draw_overlay(
    image: np.ndarray,
    pred_mask: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    prompts: Sequence[Mapping[str, Any]] = (),
    caption: str | None = None,
    alpha: float = 0.45,
    question: str | None = None,
    empty_gt: bool | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 image with overlays drawn on a copy.

    ``prompts`` are protocol dicts (``bbox_2d``, ``positive_points``, ``negative_points``).
    ``empty_gt`` tags the image as having no target; by default it is tagged when
    ``gt_mask`` is given and empty (pass ``False`` to draw the tag later, e.g. after
    downscaling). The prompts are drawn before the prediction's outline, and positive
    points are rings, so a small predicted mask under a prompt stays visible.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 300))
    pred = pred_mask.astype(bool) if pred_mask is not None and pred_mask.any() else None
    if pred is not None:
        tint = np.array(PRED_RGB, dtype=np.float32)
        out[pred] = (out[pred] * (1 - alpha) + tint * alpha).astype(np.uint8)
    if gt_mask is not None and gt_mask.any():
        contours, _ = cv2.findContours(gt_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, GT_RGB, thick)
    draw_prompts(out, prompts, thick, POS_RGB)
    if pred is not None:
        # last, so that no prompt hides the prediction: its outline, and for a mask smaller
        # than a point marker its pixels in full colour
        contours, _ = cv2.findContours(pred.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, PRED_RGB, 1)
        if np.count_nonzero(pred) <= (2 * _marker_radius(thick) + 1) ** 2:
            out[pred] = PRED_RGB
    top = 0
    if caption:
        top = _label(out, caption, (0, 0), (255, 255, 255), (0, 0, 0))
    if empty_gt if empty_gt is not None else (gt_mask is not None and not gt_mask.any()):
        scale = _text_scale(w)
        (tw, _), _ = cv2.getTextSize(EMPTY_GT_TAG, FONT, scale, 1)
        _label(out, EMPTY_GT_TAG, (max(0, w - tw - 8), top), (0, 0, 0), GT_RGB)
    if question:
        _question_band(out, question)
    return out


def _text_scale(width: int) -> float:
    return max(0.4, width / 1400)


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return " ".join(text.split()).encode("ascii", "replace").decode("ascii")


def _label(out: np.ndarray, text: str, at: tuple[int, int], fg, bg) -> int:
    """Text on a filled box with its top-left corner at ``at``; returns the box's bottom."""
    scale = _text_scale(out.shape[1])
    text = _ascii(text)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = at
    bottom = y + th + base + 8
    cv2.rectangle(out, (x, y), (min(out.shape[1], x + tw + 8), bottom), bg, -1)
    cv2.putText(out, text, (x + 4, y + th + 4), FONT, scale, fg, 1, cv2.LINE_AA)
    return bottom


def wrap_text(text: str, width_px: int, scale: float, max_lines: int = QUESTION_LINES) -> list[str]:
    """Greedy word wrap to ``width_px`` in OpenCV's font; at most ``max_lines`` lines, the
    last one cut with "..." when the text does not fit."""
    def fits(s: str) -> bool:
        return cv2.getTextSize(s, FONT, scale, 1)[0][0] <= width_px

    lines: list[str] = []
    words = _ascii(text).split(" ")
    i = 0
    while i < len(words) and len(lines) < max_lines:
        line = words[i]
        i += 1
        while not fits(line) and len(line) > 1:  # a single word wider than the band
            line = line[:-1]
        while i < len(words) and fits(f"{line} {words[i]}"):
            line = f"{line} {words[i]}"
            i += 1
        lines.append(line)
    if i < len(words) and lines:
        last = lines[-1]
        while last and not fits(last + "..."):
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def _question_band(out: np.ndarray, question: str) -> None:
    """The question in white on a darkened band along the bottom edge."""
    h, w = out.shape[:2]
    scale = _text_scale(w)
    lines = wrap_text(question, w - 8, scale)
    if not lines:
        return
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, 1)
    step = th + base + 2
    y0 = max(0, h - step * len(lines) - 6)
    out[y0:] = (out[y0:].astype(np.float32) * 0.3).astype(np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(out, line, (4, y0 + 3 + th + k * step), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


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


#: the refine feedback overlay (what the agent sees; instructions.FEEDBACK describes it)
FEEDBACK_MASK_RGB = (0, 255, 0)
FEEDBACK_POS_RGB = (30, 144, 255)


def feedback_overlay(image: np.ndarray, mask: np.ndarray | None, prompts: Sequence[Mapping[str, Any]] = (),
                     alpha: float = 0.4) -> np.ndarray:
    """The image an agent sees after a refine turn: ``mask`` (H, W) in semi-transparent green,
    boxes red, positive points blue rings, negative points magenta crosses. No ground truth,
    no text. Without a mask or prompts it is a copy of ``image``."""
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    if mask is not None and mask.any():
        m = mask.astype(bool)
        tint = np.array(FEEDBACK_MASK_RGB, dtype=np.float32)
        out[m] = (out[m] * (1 - alpha) + tint * alpha).astype(np.uint8)
    thick = max(1, round(max(h, w) / 300))
    draw_prompts(out, prompts, thick, FEEDBACK_POS_RGB)
    return out


def draw_prompts(out: np.ndarray, prompts: Sequence[Mapping[str, Any]], thick: int, pos_rgb: tuple) -> None:
    """Draw protocol prompt dicts onto ``out`` in place: boxes, positive points as circles of
    ``pos_rgb``, negative points as tilted crosses."""
    r = _marker_radius(thick)
    for p in prompts:
        box = p.get("bbox_2d")
        if box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), BOX_RGB, thick)
        for x, y in p.get("positive_points") or ():
            cv2.circle(out, (int(round(x)), int(round(y))), r, pos_rgb, thick)
        for x, y in p.get("negative_points") or ():
            cv2.drawMarker(out, (int(round(x)), int(round(y))), NEG_RGB, cv2.MARKER_TILTED_CROSS, 3 * r, thick)


def _marker_radius(thick: int) -> int:
    """The radius of a point marker drawn with lines ``thick`` pixels wide."""
    return max(3, 2 * thick)
