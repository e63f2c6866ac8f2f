"""Segmenting one answer costs a bounded amount of work (issue 8 item 7).

The timings live in ``tests/perf/test_bench_parser.py``; here the work is counted: GrabCut
runs at most ``max_grabcut_instances`` times per answer, and the box segmenter's union-first
fill gives the masks of a full-frame test.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from t2s_env.errors import ConfigError
from t2s_env.prompt import GeometricPrompt
from t2s_env.segmenters import make_segmenter


def _scene(n_side: int = 4, size: int = 240):
    """A grid of n_side² bright squares on a textured background, and one prompt per square."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    gt = np.zeros((size, size), bool)
    cell = size // n_side
    prompts = []
    for i in range(n_side * n_side):
        x, y = (i % n_side) * cell, (i // n_side) * cell
        a, b = x + cell // 4, y + cell // 4
        image[b : b + cell // 2, a : a + cell // 2] = (230, 210, 40)
        gt[b : b + cell // 2, a : a + cell // 2] = True
        prompts.append(
            GeometricPrompt(box=(a - 2, b - 2, a + cell // 2 + 2, b + cell // 2 + 2),
                            positive_points=((a + cell // 4, b + cell // 4), (a + cell // 4 + 1, b + cell // 4)))
        )
    return image, gt, prompts


def _count_grabcut(monkeypatch) -> list[int]:
    calls = []
    real = cv2.grabCut

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "grabCut", counting)
    return calls


def test_grabcut_runs_at_most_the_cap_per_answer(monkeypatch):
    image, gt, prompts = _scene(4)  # 16 instances
    seg = make_segmenter("grabcut")
    assert seg.max_grabcut_instances == 8
    calls = _count_grabcut(monkeypatch)
    mask = seg.decode(seg.encode(image), [prompts])[0].numpy()
    assert len(calls) == 1  # union-first: one GrabCut for all 16 (16 before)
    iou = (mask & gt).sum() / (mask | gt).sum()
    assert iou > 0.9  # still a segmentation, not the boxes (box IoU 0.78; per instance 1.0)


def test_grabcut_at_or_below_the_cap_segments_each_instance(monkeypatch):
    image, gt, prompts = _scene(4)
    seg = make_segmenter("grabcut", max_grabcut_instances=16)
    calls = _count_grabcut(monkeypatch)
    per_instance = seg.decode(seg.encode(image), [prompts])[0]
    assert len(calls) == 16
    # the union of single-instance masks: what a set of one prompt each gives, OR-ed
    singles = seg.decode(seg.encode(image), [[p] for p in prompts])
    assert torch.equal(per_instance, singles.any(0))


def test_grabcut_duplicate_instances_do_not_count_towards_the_cap(monkeypatch):
    image, gt, prompts = _scene(2)  # 4 distinct instances, each repeated 5 times
    seg = make_segmenter("grabcut")
    calls = _count_grabcut(monkeypatch)
    seg.decode(seg.encode(image), [prompts * 5])
    assert len(calls) == 4


def test_grabcut_union_path_keeps_fallbacks_and_never_raises():
    image, gt, prompts = _scene(3)
    odd = [
        GeometricPrompt(box=(5.0, 5.0, 6.0, 6.0)),  # too thin: its own mask
        GeometricPrompt(box=(500.0, 500.0, 10.0, 20.0)),  # raw, reversed and outside
        GeometricPrompt(negative_points=((3.0, 3.0), (4.0, 4.0))),  # selects nothing
        GeometricPrompt(positive_points=((100.0, 100.0), (101.0, 100.0))),  # points only
    ]
    seg = make_segmenter("grabcut")
    mask = seg.decode(seg.encode(image), [prompts + odd, odd])[0].numpy()
    assert mask[5, 5]  # the thin box's own pixel survives the union path


def test_grabcut_cap_option():
    with pytest.raises(ConfigError, match="max_grabcut_instances"):
        make_segmenter("grabcut", max_grabcut_instances=0)
    assert make_segmenter("grabcut", max_grabcut_instances=3).describe()["max_grabcut_instances"] == 3


def _full_frame_reference(h, w, prompt_sets, radius=8.0):
    """The box segmenter's definition, evaluated on every pixel of the frame."""
    out = np.zeros((len(prompt_sets), h, w), bool)
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    for k, prompts in enumerate(prompt_sets):
        for p in prompts:
            if p.box is not None:
                x1, y1, x2, y2 = p.box
                out[k] |= ((rows >= y1) & (rows <= y2))[:, None] & ((cols >= x1) & (cols <= x2))[None, :]
            else:
                for x, y in p.positive_points:
                    out[k] |= (cols[None, :] - x) ** 2 + (rows[:, None] - y) ** 2 <= radius**2
    return out


def test_box_union_first_fill_equals_the_full_frame_definition():
    rng = np.random.default_rng(3)
    seg = make_segmenter("box")
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(8, 70, 2))
        sets = []
        for _ in range(int(rng.integers(1, 4))):
            prompts = []
            for _ in range(int(rng.integers(0, 12))):
                c = rng.choice([rng.uniform(-20, 90, 4), rng.integers(-20, 90, 4).astype(float)])
                if rng.random() < 0.6:
                    prompts.append(GeometricPrompt(box=tuple(c)))
                else:
                    prompts.append(GeometricPrompt(positive_points=((c[0], c[1]), (c[2], c[3]))))
            sets.append(prompts)
        got = seg.decode(seg.encode(np.zeros((h, w, 3), np.uint8)), sets).numpy()
        assert np.array_equal(got, _full_frame_reference(h, w, sets))
