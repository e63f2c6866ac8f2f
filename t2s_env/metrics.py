"""Segmentation metrics of a split: summaries, per-sample IoU and bootstrap intervals (SPEC §8).

Every choice the published codebases make differently is a field of the split's metric
protocol (:mod:`t2s_env.protocol`: how an empty ground truth is scored, the Pr@X
comparator and denominator, whether empty-GT samples count in cIoU, what an empty
denominator reports, ...); the functions here compute gIoU, cIoU, Pr@X and N-Acc under a
protocol, and percentile bootstrap intervals over samples.

Everything works on per-sample arrays (intersection, union, flags) and is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError
from .protocol import EMPTY_RULES, MetricProtocol, get_protocol

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: summary keys that get a bootstrap interval
INTERVAL_KEYS = ("gIoU", "cIoU", "Pr@0.5")


def per_sample_iou(
    intersection: Sequence[int],
    union: Sequence[int],
    gt_empty: Sequence[bool],
    pred_empty: Sequence[bool],
    parsed_ok: Sequence[bool],
    answer_empty: Sequence[bool],
    empty_rule: str = "t2s",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample IoU under an empty-GT rule -> (iou float64 (N,), counted bool (N,)).

    ``answer_empty``: the answer parsed and is exactly ``[]`` (not: its mask is empty).
    """
    if empty_rule not in EMPTY_RULES:
        raise ConfigError(f"empty_rule {empty_rule!r} is not one of {', '.join(EMPTY_RULES)}")
    inter = np.asarray(intersection, dtype=np.float64)
    uni = np.asarray(union, dtype=np.float64)
    gt_empty = np.asarray(gt_empty, dtype=bool)
    parsed_ok = np.asarray(parsed_ok, dtype=bool)
    answer_empty = np.asarray(answer_empty, dtype=bool)
    iou = np.divide(inter, uni, out=np.zeros_like(inter), where=uni > 0)
    if empty_rule == "t2s":
        # Upstream: 1.0 only when the parsed answer has no instance; a box whose mask
        # comes out empty (e.g. outside the frame) is still a wrong "there is one".
        empty_score = (parsed_ok & answer_empty).astype(np.float64)
    elif empty_rule == "one":
        empty_score = (uni == 0).astype(np.float64)
    else:
        empty_score = np.zeros_like(inter)
    iou = np.where(gt_empty, empty_score, iou)
    counted = ~gt_empty if empty_rule == "skip" else np.ones_like(gt_empty)
    return iou, counted


@dataclass
class _Columns:
    """Per-sample arrays and the masks of who enters which denominator."""

    inter: np.ndarray
    uni: np.ndarray
    iou: np.ndarray
    counted: np.ndarray
    in_ciou: np.ndarray
    in_pr: np.ndarray
    gt_e: np.ndarray
    pred_e: np.ndarray
    ok: np.ndarray
    answer_e: np.ndarray


def _columns(intersection, union, gt_empty, pred_empty, parsed_ok, answer_empty, proto: MetricProtocol) -> _Columns:
    inter = np.asarray(intersection, dtype=np.float64)
    uni = np.asarray(union, dtype=np.float64)
    gt_e = np.asarray(gt_empty, dtype=bool)
    pred_e = np.asarray(pred_empty, dtype=bool)
    ok = np.asarray(parsed_ok, dtype=bool)
    ans_e = np.asarray(answer_empty, dtype=bool) & ok
    iou, counted = per_sample_iou(inter, uni, gt_e, pred_e, ok, ans_e, proto.empty_rule)
    in_ciou = counted & (proto.ciou_includes_empty_gt | ~gt_e)
    if proto.pr_denominator == "all":
        in_pr = counted
    elif proto.pr_denominator == "parsed":
        in_pr = counted & ok
    else:  # "predicted": upstream counts a sample when it produced a mask
        in_pr = counted & ok & (~ans_e | gt_e)
    return _Columns(inter, uni, iou, counted, in_ciou, in_pr, gt_e, pred_e, ok, ans_e)


def _hits(iou: np.ndarray, threshold: float, comparator: str) -> np.ndarray:
    return iou >= threshold if comparator == ">=" else iou > threshold


def summarize(
    intersection: Sequence[int],
    union: Sequence[int],
    gt_empty: Sequence[bool],
    pred_empty: Sequence[bool],
    parsed_ok: Sequence[bool],
    answer_empty: Sequence[bool],
    protocol: "str | MetricProtocol" = "strict",
) -> dict[str, Any]:
    """gIoU, cIoU, Pr@0.5…0.9, N-Acc, n, n_failed (fractions in [0, 1]; an empty
    denominator gives None, or 0.0 under ``empty_denominator: zero``)."""
    proto = get_protocol(protocol)
    c = _columns(intersection, union, gt_empty, pred_empty, parsed_ok, answer_empty, proto)
    empty = 0.0 if proto.empty_denominator == "zero" else None

    giou = float(c.iou[c.counted].mean()) if c.counted.any() else empty
    sum_u = c.uni[c.in_ciou].sum()
    if not c.in_ciou.any():
        ciou = empty
    elif sum_u > 0:
        ciou = float(c.inter[c.in_ciou].sum() / sum_u)
    else:
        # Nothing predicted and nothing to find: every included sample is perfect
        # (upstream prints 0.0 for ΣU = 0).
        ciou = 1.0 if empty is None else 0.0
    out: dict[str, Any] = {"gIoU": giou, "cIoU": ciou}
    for t in THRESHOLDS:
        out[f"Pr@{t}"] = float(_hits(c.iou, t, proto.comparator)[c.in_pr].mean()) if c.in_pr.any() else empty
    # N-Acc is not an upstream metric: with no empty GT it is undefined under every protocol.
    out["N-Acc"] = float(c.answer_e[c.gt_e].mean()) if c.gt_e.any() else None
    out["n"] = int(len(c.inter))
    out["n_failed"] = int((~c.ok).sum())
    out["n_empty_gt"] = int(c.gt_e.sum())
    out["n_pr"] = int(c.in_pr.sum())
    return out


RECORD_KEYS = ("intersection", "union", "gt_empty", "pred_empty", "parsed_ok", "answer_empty")


def record_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The per-sample columns of sample records (samples.jsonl lines). Records written
    before ``answer_empty`` was recorded derive it from their prompts."""
    cols: dict[str, list[Any]] = {k: [] for k in RECORD_KEYS}
    for r in records:
        for k in RECORD_KEYS[:-1]:
            cols[k].append(r[k])
        if "answer_empty" in r:
            cols["answer_empty"].append(bool(r["answer_empty"]))
        else:
            cols["answer_empty"].append(bool(r["parsed_ok"]) and not r.get("prompts"))
    return cols


def summarize_records(records: Sequence[Mapping[str, Any]], protocol: "str | MetricProtocol" = "strict") -> dict[str, Any]:
    """:func:`summarize` over dicts with keys intersection, union, gt_empty, pred_empty,
    parsed_ok and answer_empty."""
    return summarize(**record_columns(records), protocol=protocol)


# -- bootstrap intervals ------------------------------------------------------------------

DEFAULT_BOOTSTRAP = 1000
_MAX_CELLS = 2_000_000  # resample indices held at once (B × N)


def _resampled_stats(c: _Columns, proto: MetricProtocol, idx: np.ndarray) -> dict[str, np.ndarray]:
    """gIoU, cIoU and Pr@0.5 of each resample (rows of ``idx``); NaN where undefined."""
    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    counted = c.counted[idx]
    giou = ratio((c.iou[idx] * counted).sum(1), counted.sum(1).astype(np.float64))
    in_c = c.in_ciou[idx]
    su = (c.uni[idx] * in_c).sum(1)
    ciou = ratio((c.inter[idx] * in_c).sum(1), su)
    # ΣU = 0 with samples present: the value summarize gives
    ciou = np.where((su == 0) & in_c.any(1), 1.0 if proto.empty_denominator == "none" else 0.0, ciou)
    in_pr = c.in_pr[idx]
    pr = ratio((_hits(c.iou, 0.5, proto.comparator)[idx] & in_pr).sum(1).astype(np.float64),
               in_pr.sum(1).astype(np.float64))
    return {"gIoU": giou, "cIoU": ciou, "Pr@0.5": pr}


def _resample_indices(n: int, n_boot: int, seed: int):
    """Chunks of (b, n) resample indices; the same seed gives the same sequence."""
    rng = np.random.default_rng(seed)
    step = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        yield rng.integers(0, n, size=(min(step, n_boot - start), n))


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def bootstrap_intervals(
    records: Sequence[Mapping[str, Any]],
    protocol: "str | MetricProtocol" = "strict",
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap intervals over samples for gIoU, cIoU and Pr@0.5:
    ``{"gIoU": [lo, hi], ..., "n_boot": B, "seed": s, "level": 0.95}``. Deterministic for
    a seed; a metric undefined in every resample gets None."""
    proto = get_protocol(protocol)
    c = _columns(**record_columns(records), proto=proto)
    out: dict[str, Any] = {"n_boot": int(n_boot), "seed": int(seed), "level": float(level)}
    if len(c.inter) == 0 or n_boot < 1:
        return {**out, **{k: None for k in INTERVAL_KEYS}}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in INTERVAL_KEYS}
    for idx in _resample_indices(len(c.inter), n_boot, seed):
        for k, v in _resampled_stats(c, proto, idx).items():
            parts[k].append(v)
    for k in INTERVAL_KEYS:
        out[k] = _interval(np.concatenate(parts[k]), level)
    return out


def paired_bootstrap(
    records_a: Sequence[Mapping[str, Any]],
    records_b: Sequence[Mapping[str, Any]],
    protocol: "str | MetricProtocol" = "strict",
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Paired bootstrap of A − B for gIoU, cIoU and Pr@0.5 on the samples both runs
    scored (matched by ``sample_id``; the same resamples for both):
    ``{"gIoU": {"diff": d, "interval": [lo, hi]}, ..., "n": shared samples}``."""
    proto = get_protocol(protocol)
    by_id = {r["sample_id"]: r for r in records_b}
    shared = [r for r in records_a if r["sample_id"] in by_id]
    if not shared:
        raise ConfigError("the two runs share no sample ids; a paired comparison needs the same samples")
    a_recs, b_recs = shared, [by_id[r["sample_id"]] for r in shared]
    ca = _columns(**record_columns(a_recs), proto=proto)
    cb = _columns(**record_columns(b_recs), proto=proto)
    point_a, point_b = summarize_records(a_recs, proto), summarize_records(b_recs, proto)
    diffs: dict[str, list[np.ndarray]] = {k: [] for k in INTERVAL_KEYS}
    for idx in _resample_indices(len(shared), n_boot, seed):
        sa, sb = _resampled_stats(ca, proto, idx), _resampled_stats(cb, proto, idx)
        for k in INTERVAL_KEYS:
            diffs[k].append(sa[k] - sb[k])
    out: dict[str, Any] = {"n": len(shared), "n_boot": int(n_boot), "seed": int(seed), "level": float(level)}
    for k in INTERVAL_KEYS:
        a, b = point_a[k], point_b[k]
        out[k] = {
            "a": a,
            "b": b,
            "diff": None if a is None or b is None else a - b,
            "interval": _interval(np.concatenate(diffs[k]), level),
        }
    return out
