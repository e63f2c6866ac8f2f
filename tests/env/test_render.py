"""Overlays (t2s_env.render): the question band, the empty-GT tag, and prompts that never
hide a small predicted mask."""

from __future__ import annotations

import cv2
import numpy as np

from t2s_env.render import FONT, GT_RGB, POS_RGB, PRED_RGB, draw_overlay, wrap_text
from think2seg.benchmarks.tensorboard_log import make_tile


def grey(h=200, w=300) -> np.ndarray:
    return np.full((h, w, 3), 100, np.uint8)


def count_colour(img: np.ndarray, rgb) -> int:
    return int(np.count_nonzero(np.all(img == np.array(rgb, np.uint8), axis=-1)))


def test_prompts_do_not_hide_a_small_predicted_mask():
    pred = np.zeros((200, 300), bool)
    pred[50:53, 80:83] = True  # 9 pixels, smaller than a point marker
    prompts = [{"bbox_2d": [78, 48, 85, 55], "positive_points": [[81, 51], [82, 52]], "negative_points": [[80, 50]]}]
    out = draw_overlay(grey(), pred_mask=pred, prompts=prompts)
    assert np.all(out[pred] == np.array(PRED_RGB, np.uint8))
    # the points are still drawn (rings around the mask)
    assert count_colour(out, POS_RGB) > 0


def test_a_large_mask_keeps_its_texture_under_the_tint():
    pred = np.zeros((200, 300), bool)
    pred[20:180, 20:280] = True
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    out = draw_overlay(img, pred_mask=pred)
    inner = out[40:160, 40:260].reshape(-1, 3)
    assert len(np.unique(inner, axis=0)) > 1000  # tinted, not painted over


def test_empty_gt_is_tagged_and_a_present_one_is_not():
    h, w = 200, 300
    tagged = draw_overlay(grey(h, w), gt_mask=np.zeros((h, w), bool), caption="s1  IoU 0.00")
    corner = tagged[:40, w // 2:]
    assert count_colour(corner, GT_RGB) > 50
    gt = np.zeros((h, w), bool)
    gt[150:190, 10:60] = True
    plain = draw_overlay(grey(h, w), gt_mask=gt)
    assert count_colour(plain[:40, w // 2:], GT_RGB) == 0
    assert count_colour(draw_overlay(grey(h, w), gt_mask=np.zeros((h, w), bool), empty_gt=False), GT_RGB) == 0


def test_question_is_written_in_a_band_at_the_bottom():
    out = draw_overlay(grey(), question="Where could a plane take off?")
    assert np.array_equal(out[:150], grey()[:150])  # the image above the band is untouched
    band = out[170:]
    assert band.min() < 100 and count_colour(band, (255, 255, 255)) > 0


def test_long_question_wraps_to_three_lines_cut_with_an_ellipsis():
    text = " ".join(["Which"] + ["word"] * 200) + " Ünïcode?"
    lines = wrap_text(text, 280, 0.4)
    assert len(lines) == 3 and lines[-1].endswith("...")
    assert all(cv2.getTextSize(line, FONT, 0.4, 1)[0][0] <= 280 for line in lines)
    assert wrap_text("short one", 280, 0.4) == ["short one"]


def test_benchmark_tile_shows_question_and_empty_gt_legibly():
    h, w = 900, 900
    tile = make_tile(grey(h, w), np.zeros((h, w), bool), None, [], "s0  IoU 1.00", question="Is there a bridge?")
    assert tile.shape == (280, 280, 3)
    assert count_colour(tile[:40, 140:], GT_RGB) > 50
    assert np.count_nonzero(tile[240:].min(axis=-1) > 200) > 20  # white (anti-aliased) text
