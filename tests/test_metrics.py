"""Split metrics (SPEC §8) under every empty-GT rule and both presets, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2s_env.errors import ConfigError
from t2s_env.metrics import (
    PROTOCOLS,
    MetricProtocol,
    get_protocol,
    intersection_union,
    per_sample_iou,
    summarize,
    summarize_records,
)

# One small split covering every case. Columns: intersection, union, gt_empty, pred_empty, parsed_ok
#   S1 non-empty GT, parsed, IoU 30/40 = 0.75
#   S2 non-empty GT, parsed, IoU 50/100 = 0.5
#   S3 non-empty GT, parse failure (prediction empty, union = |G| = 20)
#   S4 empty GT, parsed, empty prediction ([]): union 0
#   S5 empty GT, parsed, false positive of 10 px
#   S6 empty GT, parse failure: union 0
#   S7 non-empty GT, parsed, empty prediction ([]), union = |G| = 25
#   S8 non-empty GT, parsed, IoU 90/100 = 0.9
SAMPLES = [
    (30, 40, False, False, True),
    (50, 100, False, False, True),
    (0, 20, False, True, False),
    (0, 0, True, True, True),
    (0, 10, True, False, True),
    (0, 0, True, True, False),
    (0, 25, False, True, True),
    (90, 100, False, False, True),
]
COLS = dict(zip(("intersection", "union", "gt_empty", "pred_empty", "parsed_ok"), map(list, zip(*SAMPLES))))
N = len(SAMPLES)

# Per-sample IoU under each empty-GT rule (None: the sample is left out).
PER_SAMPLE = {
    "t2s": [0.75, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.9],
    "one": [0.75, 0.5, 0.0, 1.0, 0.0, 1.0, 0.0, 0.9],
    "zero": [0.75, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9],
    "skip": [0.75, 0.5, 0.0, None, None, None, 0.0, 0.9],
}
FAILED = [not s[4] for s in SAMPLES]
GT_EMPTY = [s[2] for s in SAMPLES]
SUM_I = 30 + 50 + 90
SUM_U_ALL = 40 + 100 + 20 + 0 + 10 + 0 + 25 + 100  # 295
SUM_U_NONEMPTY = 40 + 100 + 20 + 25 + 100  # 285
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _expected(rule: str, preset: str, comparator: str = ">=") -> dict:
    """Independent, slow re-derivation of every number from the definitions."""
    ious = PER_SAMPLE[rule]
    counted = [v is not None for v in ious]
    vals = [v for v in ious if v is not None]
    giou = sum(vals) / len(vals)
    if preset == "strict":  # cIoU over every counted sample
        in_c = counted
    else:  # t2s-compat: empty GT out of cIoU
        in_c = [c and not e for c, e in zip(counted, GT_EMPTY)]
    si = sum(s[0] for s, keep in zip(SAMPLES, in_c) if keep)
    su = sum(s[1] for s, keep in zip(SAMPLES, in_c) if keep)
    out = {"gIoU": giou, "cIoU": si / su}
    for t in THRESHOLDS:
        pool = [
            v for v, c, f in zip(ious, counted, FAILED)
            if c and (preset == "strict" or not f)  # t2s-compat: failures out of the denominator
        ]
        hits = [v >= t if comparator == ">=" else v > t for v in pool]
        out[f"Pr@{t}"] = sum(hits) / len(pool)
    out["N-Acc"] = 1 / 3  # only S4 of S4..S6 answered "no target"
    out["n"] = N
    out["n_failed"] = 2
    out["n_empty_gt"] = 3
    return out


# Hand-computed values for a few combinations (the derivation above is checked against them).
HAND = {
    ("t2s", "strict", ">="): {
        "gIoU": 3.15 / 8, "cIoU": 170 / 295,
        "Pr@0.5": 4 / 8, "Pr@0.6": 3 / 8, "Pr@0.7": 3 / 8, "Pr@0.8": 2 / 8, "Pr@0.9": 2 / 8,
    },
    ("t2s", "strict", ">"): {
        "gIoU": 3.15 / 8, "cIoU": 170 / 295,
        "Pr@0.5": 3 / 8, "Pr@0.6": 3 / 8, "Pr@0.7": 3 / 8, "Pr@0.8": 2 / 8, "Pr@0.9": 1 / 8,
    },
    ("one", "strict", ">="): {
        "gIoU": 4.15 / 8, "cIoU": 170 / 295,
        "Pr@0.5": 5 / 8, "Pr@0.6": 4 / 8, "Pr@0.7": 4 / 8, "Pr@0.8": 3 / 8, "Pr@0.9": 3 / 8,
    },
    ("zero", "strict", ">="): {
        "gIoU": 2.15 / 8, "cIoU": 170 / 295,
        "Pr@0.5": 3 / 8, "Pr@0.6": 2 / 8, "Pr@0.7": 2 / 8, "Pr@0.8": 1 / 8, "Pr@0.9": 1 / 8,
    },
    ("skip", "strict", ">="): {
        "gIoU": 2.15 / 5, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 5, "Pr@0.6": 2 / 5, "Pr@0.7": 2 / 5, "Pr@0.8": 1 / 5, "Pr@0.9": 1 / 5,
    },
    ("t2s", "t2s-compat", ">="): {
        "gIoU": 3.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 4 / 6, "Pr@0.6": 3 / 6, "Pr@0.7": 3 / 6, "Pr@0.8": 2 / 6, "Pr@0.9": 2 / 6,
    },
    ("t2s", "t2s-compat", ">"): {
        "gIoU": 3.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 6, "Pr@0.6": 3 / 6, "Pr@0.7": 3 / 6, "Pr@0.8": 2 / 6, "Pr@0.9": 1 / 6,
    },
    ("one", "t2s-compat", ">="): {  # S6 (failure) leaves the Pr pool; it still counts in gIoU
        "gIoU": 4.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 4 / 6, "Pr@0.6": 3 / 6, "Pr@0.7": 3 / 6, "Pr@0.8": 2 / 6, "Pr@0.9": 2 / 6,
    },
    ("zero", "t2s-compat", ">="): {
        "gIoU": 2.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 6, "Pr@0.6": 2 / 6, "Pr@0.7": 2 / 6, "Pr@0.8": 1 / 6, "Pr@0.9": 1 / 6,
    },
    ("skip", "t2s-compat", ">="): {
        "gIoU": 2.15 / 5, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 4, "Pr@0.6": 2 / 4, "Pr@0.7": 2 / 4, "Pr@0.8": 1 / 4, "Pr@0.9": 1 / 4,
    },
}


@pytest.mark.parametrize("key", list(HAND))
def test_derivation_matches_hand_values(key):
    exp = _expected(*key)
    for k, v in HAND[key].items():
        assert exp[k] == pytest.approx(v), (key, k)


def _protocol(rule, preset, comparator):
    return get_protocol({"preset": preset, "empty_rule": rule, "comparator": comparator})


@pytest.mark.parametrize("comparator", [">=", ">"])
@pytest.mark.parametrize("preset", ["strict", "t2s-compat"])
@pytest.mark.parametrize("rule", ["t2s", "one", "zero", "skip"])
def test_summarize_every_rule_and_preset(rule, preset, comparator):
    got = summarize(**COLS, protocol=_protocol(rule, preset, comparator))
    exp = _expected(rule, preset, comparator)
    for k, v in exp.items():
        assert got[k] == pytest.approx(v), k
    if (rule, preset, comparator) in HAND:
        for k, v in HAND[(rule, preset, comparator)].items():
            assert got[k] == pytest.approx(v), k


@pytest.mark.parametrize("rule", ["t2s", "one", "zero", "skip"])
def test_per_sample_iou_rules(rule):
    iou, counted = per_sample_iou(**COLS, empty_rule=rule)
    exp = PER_SAMPLE[rule]
    assert list(counted) == [v is not None for v in exp]
    for got, want in zip(iou, exp):
        if want is not None:
            assert got == pytest.approx(want)


def test_default_protocol_is_strict():
    p = get_protocol("strict")
    assert p == MetricProtocol()
    assert (p.empty_rule, p.comparator, p.ciou_includes_empty_gt, p.pr_counts_failures) == ("t2s", ">=", True, True)
    assert summarize(**COLS) == summarize(**COLS, protocol="strict")
    got = summarize(**COLS)
    assert got["cIoU"] == pytest.approx(170 / 295)
    assert got["Pr@0.5"] == pytest.approx(4 / 8)


def test_t2s_compat_preset():
    p = PROTOCOLS["t2s-compat"]
    assert p.empty_rule == "t2s" and p.comparator == ">="
    assert not p.ciou_includes_empty_gt and not p.pr_counts_failures
    assert p.image_size == 840
    got = summarize(**COLS, protocol="t2s-compat")
    assert got["cIoU"] == pytest.approx(170 / 285)
    assert got["Pr@0.5"] == pytest.approx(4 / 6)
    assert got["gIoU"] == pytest.approx(3.15 / 8)


def test_strict_false_positive_on_empty_gt_lowers_ciou():
    """strict: a false positive on an empty GT adds to ΣU; t2s-compat hides it."""
    base = dict(intersection=[50], union=[100], gt_empty=[False], pred_empty=[False], parsed_ok=[True])
    fp = {k: v + [x] for (k, v), x in zip(base.items(), [0, 100, True, False, True])}
    assert summarize(**base)["cIoU"] == pytest.approx(0.5)
    assert summarize(**fp)["cIoU"] == pytest.approx(50 / 200)
    assert summarize(**fp, protocol="t2s-compat")["cIoU"] == pytest.approx(0.5)


def test_failures_in_pr_denominator():
    cols = dict(intersection=[80, 0], union=[100, 30], gt_empty=[False, False], pred_empty=[False, True],
                parsed_ok=[True, False])
    assert summarize(**cols)["Pr@0.5"] == pytest.approx(0.5)
    assert summarize(**cols, protocol="t2s-compat")["Pr@0.5"] == pytest.approx(1.0)
    # gIoU counts the failure as 0 under both presets
    assert summarize(**cols)["gIoU"] == pytest.approx(0.4)
    assert summarize(**cols, protocol="t2s-compat")["gIoU"] == pytest.approx(0.4)


def test_comparator_at_threshold():
    cols = dict(intersection=[1, 7, 4], union=[2, 10, 5], gt_empty=[False] * 3, pred_empty=[False] * 3,
                parsed_ok=[True] * 3)
    ge = summarize(**cols, protocol={"comparator": ">="})
    gt = summarize(**cols, protocol={"comparator": ">"})
    assert ge["Pr@0.5"] == pytest.approx(1.0) and gt["Pr@0.5"] == pytest.approx(2 / 3)
    assert ge["Pr@0.7"] == pytest.approx(2 / 3) and gt["Pr@0.7"] == pytest.approx(1 / 3)
    assert ge["Pr@0.8"] == pytest.approx(1 / 3) and gt["Pr@0.8"] == pytest.approx(0.0)


def test_n_acc_and_counts():
    got = summarize(**COLS)
    assert got["N-Acc"] == pytest.approx(1 / 3)
    assert got["n"] == 8 and got["n_failed"] == 2 and got["n_empty_gt"] == 3
    no_empty = {k: [v[i] for i in (0, 1, 2, 6, 7)] for k, v in COLS.items()}
    assert summarize(**no_empty)["N-Acc"] is None


def test_summarize_records_equals_summarize():
    records = [dict(zip(COLS, s), sample_id=f"s{i}") for i, s in enumerate(SAMPLES)]
    for preset in ("strict", "t2s-compat"):
        assert summarize_records(records, preset) == summarize(**COLS, protocol=preset)


def test_summarize_accepts_numpy_arrays():
    arrays = {k: np.asarray(v) for k, v in COLS.items()}
    assert summarize(**arrays) == summarize(**COLS)


def test_protocol_errors_and_overrides():
    with pytest.raises(ConfigError):
        get_protocol("paper")
    with pytest.raises(ConfigError):
        MetricProtocol(empty_rule="maybe")
    with pytest.raises(ConfigError):
        MetricProtocol(comparator="<")
    with pytest.raises(ConfigError):
        get_protocol({"preset": "strict", "colour": "blue"})
    with pytest.raises(ConfigError):
        per_sample_iou(**COLS, empty_rule="nope")
    p = get_protocol({"preset": "t2s-compat", "comparator": ">"})
    assert p.comparator == ">" and not p.ciou_includes_empty_gt
    d = p.to_dict()
    for key in ("name", "empty_rule", "comparator", "image_size", "question"):
        assert key in d


# -- intersection / union -----------------------------------------------------------------


def _naive(pred, gt):
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    inter = union = 0
    for p, g in zip(pred.ravel().tolist(), gt.ravel().tolist()):
        inter += p and g
        union += p or g
    return inter, union


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (16, 16), (33, 65)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_intersection_union_single(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    pred = rng.random(shape) < density
    gt = rng.random(shape) < 0.3
    want = _naive(pred, gt)
    i, u = intersection_union(pred, gt)
    assert (int(i), int(u)) == want
    ti, tu = intersection_union(torch.from_numpy(pred), torch.from_numpy(gt))
    assert (int(ti), int(tu)) == want
    # uint8 0/255 inputs are masks too
    i8, u8 = intersection_union(pred.astype(np.uint8) * 255, gt.astype(np.uint8))
    assert (int(i8), int(u8)) == want


@pytest.mark.parametrize("shape", [(5, 9, 11), (3, 32, 32), (2, 1, 3)])
def test_intersection_union_batched(shape):
    rng = np.random.default_rng(sum(shape))
    pred = rng.random(shape) < 0.4
    gt = rng.random(shape) < 0.4
    want = [_naive(p, g) for p, g in zip(pred, gt)]
    i, u = intersection_union(pred, gt)
    assert np.asarray(i).shape == (shape[0],)
    assert list(zip(np.asarray(i).tolist(), np.asarray(u).tolist())) == want
    ti, tu = intersection_union(torch.from_numpy(pred), torch.from_numpy(gt))
    assert list(zip(ti.tolist(), tu.tolist())) == want
    # one GT broadcast against a batch of predictions
    g0 = gt[0]
    want0 = [_naive(p, g0) for p in pred]
    i, u = intersection_union(pred, g0)
    assert list(zip(np.asarray(i).tolist(), np.asarray(u).tolist())) == want0
    ti, tu = intersection_union(torch.from_numpy(pred), torch.from_numpy(g0))
    assert list(zip(ti.tolist(), tu.tolist())) == want0
