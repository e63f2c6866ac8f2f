"""Metrics at dataset scale: 10,000 masks of 840×840 to per-sample counts and a summary.

The masks are streamed in chunks (10k masks at 840² are 7 GB as bool): a fixed chunk of
random prediction/GT pairs is counted 40 times, then the 10k per-sample records are
summarised under both presets. Target: seconds, not minutes.
"""

from __future__ import annotations

import time

import numpy as np

from t2s_env.iou import intersection_union
from t2s_env.metrics import summarize

N_MASKS = 10_000
CHUNK = 250
SIDE = 840


def _chunk(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Blocky masks (upsampled 105² noise) look more like segmentations than pixel noise.
    small = rng.random((2, CHUNK, SIDE // 8, SIDE // 8)) > 0.6
    big = small.repeat(8, axis=2).repeat(8, axis=3)
    return big[0], big[1]


def count_and_summarize(pred: np.ndarray, gt: np.ndarray) -> dict:
    inter, union, gt_empty, pred_empty = [], [], [], []
    for _ in range(N_MASKS // CHUNK):
        i, u = intersection_union(pred, gt)
        inter.append(i)
        union.append(u)
        gt_empty.append(~gt.reshape(CHUNK, -1).any(1))
        pred_empty.append(~pred.reshape(CHUNK, -1).any(1))
    cols = [np.concatenate(c) for c in (inter, union, gt_empty, pred_empty)]
    parsed = np.ones(N_MASKS, dtype=bool)
    parsed[::50] = False  # 2 % parse failures
    answer_empty = np.zeros(N_MASKS, dtype=bool)  # every parsed answer names an instance
    return {p: summarize(*cols, parsed, answer_empty, protocol=p) for p in ("strict", "t2s-compat")}


def test_summarize_10k_masks_840(benchmark, figures):
    pred, gt = _chunk(np.random.default_rng(0))
    t0 = time.perf_counter()
    out = benchmark.pedantic(count_and_summarize, args=(pred, gt), rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    assert out["strict"]["n"] == N_MASKS
    figures("metrics: 10k masks of 840² counted + summarised", seconds, "s", "numpy packbits path, 1 process")
