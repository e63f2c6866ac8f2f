"""Split metrics (SPEC §8) under every empty-GT rule and both presets, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2s_env.errors import ConfigError
from t2s_env.iou import intersection_union
from t2s_env.metrics import per_sample_iou, summarize, summarize_records
from t2s_env.protocol import PROTOCOLS, MetricProtocol, get_protocol

# One small split covering every case.
# Columns: intersection, union, gt_empty, pred_empty, parsed_ok, answer_empty ([] exactly)
#   S1 non-empty GT, parsed, IoU 30/40 = 0.75
#   S2 non-empty GT, parsed, IoU 50/100 = 0.5
#   S3 non-empty GT, parse failure (prediction empty, union = |G| = 20)
#   S4 empty GT, parsed, empty prediction ([]): union 0
#   S5 empty GT, parsed, false positive of 10 px
#   S6 empty GT, parse failure: union 0
#   S7 non-empty GT, parsed, empty prediction ([]), union = |G| = 25
#   S8 non-empty GT, parsed, IoU 90/100 = 0.9
SAMPLES = [
    (30, 40, False, False, True, False),
    (50, 100, False, False, True, False),
    (0, 20, False, True, False, False),
    (0, 0, True, True, True, True),
    (0, 10, True, False, True, False),
    (0, 0, True, True, False, False),
    (0, 25, False, True, True, True),
    (90, 100, False, False, True, False),
]
COLS = dict(zip(("intersection", "union", "gt_empty", "pred_empty", "parsed_ok", "answer_empty"),
                map(list, zip(*SAMPLES))))
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
# t2s-compat's Pr denominator: samples with a mask (parsed, and not [] unless the GT is empty)
PREDICTED = [s[4] and (not s[5] or s[2]) for s in SAMPLES]
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
            v for v, c, p in zip(ious, counted, PREDICTED)
            if c and (preset == "strict" or p)  # t2s-compat: only samples with a mask
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
    ("t2s", "t2s-compat", ">="): {  # Pr pool: S1 S2 S4 S5 S8 (S3, S6 failed; S7 is [])
        "gIoU": 3.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 4 / 5, "Pr@0.6": 3 / 5, "Pr@0.7": 3 / 5, "Pr@0.8": 2 / 5, "Pr@0.9": 2 / 5,
    },
    ("t2s", "t2s-compat", ">"): {
        "gIoU": 3.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 5, "Pr@0.6": 3 / 5, "Pr@0.7": 3 / 5, "Pr@0.8": 2 / 5, "Pr@0.9": 1 / 5,
    },
    ("one", "t2s-compat", ">="): {  # S6 (failure) leaves the Pr pool; it still counts in gIoU
        "gIoU": 4.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 4 / 5, "Pr@0.6": 3 / 5, "Pr@0.7": 3 / 5, "Pr@0.8": 2 / 5, "Pr@0.9": 2 / 5,
    },
    ("zero", "t2s-compat", ">="): {
        "gIoU": 2.15 / 8, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 5, "Pr@0.6": 2 / 5, "Pr@0.7": 2 / 5, "Pr@0.8": 1 / 5, "Pr@0.9": 1 / 5,
    },
    ("skip", "t2s-compat", ">="): {
        "gIoU": 2.15 / 5, "cIoU": 170 / 285,
        "Pr@0.5": 3 / 3, "Pr@0.6": 2 / 3, "Pr@0.7": 2 / 3, "Pr@0.8": 1 / 3, "Pr@0.9": 1 / 3,
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
    assert (p.empty_rule, p.comparator, p.ciou_includes_empty_gt, p.pr_denominator) == ("t2s", ">=", True, "all")
    assert (p.empty_denominator, p.prompt_geometry, p.iou_frame) == ("none", "clipped", "agent")
    assert summarize(**COLS) == summarize(**COLS, protocol="strict")
    got = summarize(**COLS)
    assert got["cIoU"] == pytest.approx(170 / 295)
    assert got["Pr@0.5"] == pytest.approx(4 / 8)


def test_t2s_compat_preset():
    p = PROTOCOLS["t2s-compat"]
    assert p.empty_rule == "t2s" and p.comparator == ">="
    assert not p.ciou_includes_empty_gt and p.pr_denominator == "predicted"
    assert p.empty_denominator == "zero" and p.prompt_geometry == "raw" and p.question == "random"
    assert p.image_size == 840
    got = summarize(**COLS, protocol="t2s-compat")
    assert got["cIoU"] == pytest.approx(170 / 285)
    assert got["Pr@0.5"] == pytest.approx(4 / 5)
    assert got["gIoU"] == pytest.approx(3.15 / 8)


def test_strict_false_positive_on_empty_gt_lowers_ciou():
    """strict: a false positive on an empty GT adds to ΣU; t2s-compat hides it."""
    base = dict(intersection=[50], union=[100], gt_empty=[False], pred_empty=[False], parsed_ok=[True],
                answer_empty=[False])
    fp = {k: v + [x] for (k, v), x in zip(base.items(), [0, 100, True, False, True, False])}
    assert summarize(**base)["cIoU"] == pytest.approx(0.5)
    assert summarize(**fp)["cIoU"] == pytest.approx(50 / 200)
    assert summarize(**fp, protocol="t2s-compat")["cIoU"] == pytest.approx(0.5)


def test_failures_in_pr_denominator():
    cols = dict(intersection=[80, 0], union=[100, 30], gt_empty=[False, False], pred_empty=[False, True],
                parsed_ok=[True, False], answer_empty=[False, False])
    assert summarize(**cols)["Pr@0.5"] == pytest.approx(0.5)
    assert summarize(**cols, protocol="t2s-compat")["Pr@0.5"] == pytest.approx(1.0)
    # gIoU counts the failure as 0 under both presets
    assert summarize(**cols)["gIoU"] == pytest.approx(0.4)
    assert summarize(**cols, protocol="t2s-compat")["gIoU"] == pytest.approx(0.4)


def test_comparator_at_threshold():
    cols = dict(intersection=[1, 7, 4], union=[2, 10, 5], gt_empty=[False] * 3, pred_empty=[False] * 3,
                parsed_ok=[True] * 3, answer_empty=[False] * 3)
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


# -- t2s-compat test vectors: each pins one behaviour of Think2Seg-RS's evaluation ---------
# (SPEC §8.1; upstream = src/eval/test_think2seg-rs_{qwen,ref}.py at 1d35fa9, described
# here, not copied). Columns as COLS: I, U, gt_empty, pred_empty, parsed_ok, answer_empty.

def _one(*rows):
    return dict(zip(("intersection", "union", "gt_empty", "pred_empty", "parsed_ok", "answer_empty"),
                    map(list, zip(*rows))))


def test_compat_empty_gt_scores_one_only_for_the_answer_empty_list():
    """Upstream: on an image without target the IoU reward is 1.0 iff the parsed answer
    list has length 0; a box whose mask comes out empty (outside the frame) scores 0."""
    box_outside = _one((0, 0, True, True, True, False))  # parsed, one instance, empty mask
    literal_empty = _one((0, 0, True, True, True, True))
    for preset in ("t2s-compat", "strict"):
        assert summarize(**box_outside, protocol=preset)["gIoU"] == 0.0
        assert summarize(**literal_empty, protocol=preset)["gIoU"] == 1.0
        assert summarize(**box_outside, protocol=preset)["N-Acc"] == 0.0
    iou, _ = per_sample_iou(**box_outside, empty_rule="t2s")
    assert iou.tolist() == [0.0]


def test_compat_empty_answer_on_a_target_is_outside_the_pr_denominator():
    """Upstream's Pr@X counts a sample only when SAM produced a mask: `[]` on a non-empty
    GT (and a parse failure) has none, so it leaves numerator and denominator."""
    cols = _one((80, 100, False, False, True, False), (0, 50, False, True, True, True), (0, 40, False, True, False, False))
    got = summarize(**cols, protocol="t2s-compat")
    assert got["Pr@0.5"] == 1.0 and got["n_pr"] == 1
    assert summarize(**cols, protocol="strict")["Pr@0.5"] == pytest.approx(1 / 3)
    # an empty GT with a parsed answer has an (all-zero) mask upstream: it stays in the pool
    cols = _one((80, 100, False, False, True, False), (0, 0, True, True, True, True))
    assert summarize(**cols, protocol="t2s-compat")["n_pr"] == 2


def test_compat_failed_and_empty_answers_add_gt_area_to_the_union():
    """Upstream: a sample without a mask adds its GT area to ΣU (0 for an empty GT);
    empty-GT samples with a mask add nothing (their I and U are not computed)."""
    cols = _one((30, 40, False, False, True, False),   # I 30, U 40
                (0, 20, False, True, False, False),    # parse failure: U += |G| = 20
                (0, 25, False, True, True, True),      # []: U += |G| = 25
                (0, 10, True, False, True, False))     # empty GT, false positive: left out
    assert summarize(**cols, protocol="t2s-compat")["cIoU"] == pytest.approx(30 / 85)
    assert summarize(**cols, protocol="strict")["cIoU"] == pytest.approx(30 / 95)


def test_compat_empty_denominators_report_zero():
    """Upstream prints 0.0 (not nothing) when ΣU = 0 or nobody has a mask."""
    all_empty_gt = _one((0, 0, True, True, True, True), (0, 0, True, True, False, False))
    got = summarize(**all_empty_gt, protocol="t2s-compat")
    assert got["cIoU"] == 0.0 and got["gIoU"] == 0.5
    only_failures = _one((0, 30, False, True, False, False))
    got = summarize(**only_failures, protocol="t2s-compat")
    assert got["Pr@0.5"] == 0.0 and got["cIoU"] == 0.0
    strict = summarize(**only_failures, protocol={"preset": "strict", "pr_denominator": "parsed"})
    assert strict["Pr@0.5"] is None  # strict says "undefined" instead
    assert summarize(**all_empty_gt, protocol="strict")["cIoU"] == 1.0


def test_compat_prompt_geometry_is_raw_and_recorded():
    """Upstream passes prompts to SAM2 unclipped, corners as written; strict clips."""
    assert PROTOCOLS["t2s-compat"].prompt_geometry == "raw"
    assert PROTOCOLS["strict"].prompt_geometry == "clipped"
    assert PROTOCOLS["t2s-compat"].to_dict()["prompt_geometry"] == "raw"


# -- protocol options ---------------------------------------------------------------------

def test_protocol_options_are_typed_and_named():
    from t2s_env.protocol import protocol_with_options

    p = protocol_with_options("t2s-compat", {"empty_rule": "skip", "comparator": ">"})
    assert p.empty_rule == "skip" and p.comparator == ">" and p.prompt_geometry == "raw"
    assert p.name == "t2s-compat+comparator=>+empty_rule=skip"
    assert protocol_with_options("strict", {"ciou_includes_empty_gt": "false"}).ciou_includes_empty_gt is False
    assert protocol_with_options("strict", {"image_size": "448"}).image_size == 448
    assert protocol_with_options("strict", {}) is PROTOCOLS["strict"]
    with pytest.raises(ConfigError, match="valid: empty_rule, comparator"):
        protocol_with_options("strict", {"colour": "blue"})
    with pytest.raises(ConfigError, match="valid: >=, >"):
        protocol_with_options("strict", {"comparator": "<"})
    with pytest.raises(ConfigError, match="16..4096"):
        protocol_with_options("strict", {"image_size": "100000"})


def test_recorded_protocol_round_trips_and_reads_schema_1():
    for p in PROTOCOLS.values():
        assert MetricProtocol.from_dict(p.to_dict()) == p
    old = {"name": "t2s-compat", "empty_rule": "t2s", "comparator": ">=", "ciou_includes_empty_gt": False,
           "pr_counts_failures": False, "image_size": 840, "question": "random"}
    assert MetricProtocol.from_dict(old).pr_denominator == "parsed"
    with pytest.raises(ConfigError):
        MetricProtocol.from_dict({**old, "colour": 1})


# -- bootstrap ------------------------------------------------------------------------------

def _records(n=40, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt_empty = i % 10 == 0
        u = 0 if gt_empty else int(rng.integers(50, 200))
        inter = 0 if gt_empty else int(rng.integers(0, u + 1))
        ok = bool(rng.random() > 0.1)
        out.append(dict(sample_id=f"s{i}", intersection=inter if ok else 0, union=u, gt_empty=gt_empty,
                        pred_empty=not ok, parsed_ok=ok, answer_empty=gt_empty and ok))
    return out


def test_bootstrap_is_deterministic_and_covers_the_point_estimate():
    from t2s_env.metrics import bootstrap_intervals

    recs = _records()
    for preset in ("strict", "t2s-compat"):
        a = bootstrap_intervals(recs, preset, n_boot=500, seed=3)
        assert a == bootstrap_intervals(recs, preset, n_boot=500, seed=3)
        assert a != bootstrap_intervals(recs, preset, n_boot=500, seed=4)
        point = summarize_records(recs, preset)
        for key in ("gIoU", "cIoU", "Pr@0.5"):
            lo, hi = a[key]
            assert lo <= point[key] <= hi and hi - lo > 0.01, (preset, key)


def test_bootstrap_matches_a_slow_resampling():
    """The vectorised resamples equal summarize() on explicitly resampled records."""
    from t2s_env.metrics import _columns, _resample_indices, _resampled_stats

    recs = _records(12, seed=5)
    proto = PROTOCOLS["t2s-compat"]
    from t2s_env.metrics import record_columns

    c = _columns(**record_columns(recs), proto=proto)
    (idx,) = list(_resample_indices(len(recs), 20, seed=1))
    fast = _resampled_stats(c, proto, idx)
    for b, row in enumerate(idx):
        slow = summarize_records([recs[i] for i in row], proto)
        for key in ("gIoU", "cIoU", "Pr@0.5"):
            assert fast[key][b] == pytest.approx(slow[key]), (b, key)


def test_paired_bootstrap_of_a_difference():
    from t2s_env.metrics import paired_bootstrap

    a = _records(40, seed=0)
    b = [dict(r, intersection=r["intersection"] // 2) for r in a]  # B is strictly worse
    got = paired_bootstrap(a, b, "strict", n_boot=400, seed=0)
    assert got == paired_bootstrap(a, b, "strict", n_boot=400, seed=0)
    lo, hi = got["cIoU"]["interval"]
    assert 0 < lo <= got["cIoU"]["diff"] <= hi
    same = paired_bootstrap(a, a, "strict", n_boot=100, seed=0)
    assert same["gIoU"]["diff"] == 0 and same["gIoU"]["interval"] == [0.0, 0.0]
    with pytest.raises(ConfigError, match="share no sample"):
        paired_bootstrap(a, [dict(r, sample_id="x" + r["sample_id"]) for r in a])
