"""Parser throughput, worst-case completions, box scoring and the cost of one answer
(pytest-benchmark; issues 8 and 9).

    .venv/bin/pytest tests/perf/test_bench_parser.py --benchmark-only      # timings
    .venv/bin/pytest tests/perf/test_bench_parser.py --benchmark-disable   # smoke run

Targets pinned here (on one core):
- parses/s on the realistic mix of 8 (the same mix as ``test_bench_env``): >= 50,000 is the
  goal; the assertion is a floor (25,000, the figure before the speed work) because a
  loaded 2-core machine measures up to 2x low;
- every adversarial completion up to the 200,000-character cap scores in under 50 ms;
- ``box`` scoring of a one-box answer at 840²: >= 1,000 scores/s;
- no answer costs more than 10x a typical (1–2 instance) one, for ``box`` and ``grabcut``.
Times are process CPU time (the machine is shared), medians of repeated runs.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Callable

import numpy as np
import pytest

from t2s_env.parser import MAX_COMPLETION_CHARS, parse_completion
from t2s_env.scoring import Scorer


def cpu_times(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


def cpu_median(fn: Callable[[], object], n: int, inner: int = 1) -> float:
    return statistics.median(cpu_times(lambda: [fn() for _ in range(inner)], n)) / inner


# -- parser throughput ---------------------------------------------------------------------

_BOX = '{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 460]]}'
REALISTIC = [
    f"<think> The dry docks sit along the quay on the left. </think>\n<answer>```json[{_BOX}]```</answer>",
    "<think> " + "Several piers are visible; the slipways are near the cranes. " * 12 + "</think> "
    '<answer>```json[{"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], [90, 300]]}, '
    f'{_BOX}, {{"bbox_2d": [600,620,700,790], "positive_points": [[650, 700], [660, 710]]}}]```</answer>',
    "<think> Nothing here. </think>\n<answer>```json[]```</answer>",
    '<think>x</think><answer>```json[{"bbox_2d": [300.5,350,570,590], "positive_points": [[434, 474], [450, 460]]}, '
    f'{_BOX}, {{"bbox_2d": [-20,800,900,1200], "positive_points": [[5, 830], [10, 835]]}}]```</answer>',
    "<think> t </think><answer>```json[{'bbox_2d': [1,2,30,40], 'positive_points': [[5,6],[7,8]],},]```</answer>",
    f"<think> t </think><answer>[{_BOX}]</answer>",
    '<think> t </think><answer>```json[{"bbox_2d": [1,2,30,40], "positive_points": [[5,6]]}]```</answer>',
    "I think the answer is the harbour on the left, around (300, 400).",
]


def test_parser_throughput(benchmark, figures):
    def parse_all():
        return [parse_completion(c, "bbox+2pos", "strict", (840, 840)) for c in REALISTIC]

    out = benchmark(parse_all)
    assert [a.ok for a in out][:4] == [True, True, True, True] and not out[-1].ok
    rate = len(REALISTIC) / cpu_median(parse_all, 15, inner=100)
    figures("parser: parses/s (strict, realistic mix of 8, CPU time)", rate, "parses/s")
    assert rate > 50_000  # issue 9 goal (was ~25,000 before the linear scans and hand repair)


# -- worst cases -----------------------------------------------------------------------------

CAP = MAX_COMPLETION_CHARS


def _wrap(body: str) -> str:
    return "<think>x</think><answer>" + body + "</answer>"


ADVERSARIAL = {
    # issue 8: cubic fence regex (132 s through env.step), quadratic answer/think patterns
    "8000 newlines after an unclosed fence": "<answer>```json" + "\n" * 8000,
    "whitespace to the cap after an unclosed fence": "<answer>```json" + "\n" * (CAP - 20),
    "closing answer tag then opening tags to the cap": "</answer>" + "<answer>" * ((CAP - 10) // 8),
    "think closers to the cap": "<think>" + "</think>" * ((CAP - 20) // 8) + "</answer>",
    "think closers and whitespace runs": "<think>" + ("</think>" + " " * 50) * ((CAP - 30) // 58) + "</answer>",
    "answer content to the cap": "<think>" + "a" * 100 + "</think><answer>" + "b" * (CAP - 140) + "</answer>",
    # the JSON-repair fallback's superlinear inputs (3.8 s at 4,000 characters unbounded)
    "repair: t]{ repeated": _wrap("[" + "t]{" * 10_000 + "]"),
    "repair: { repeated": _wrap("[" + "{" * 30_000 + "]"),
    "repair: long near-JSON": _wrap("[" + "{'bbox_2d': [1,2,30,40], 'positive_points': [[5,6],[7,8]],}," * 400 + "]"),
    "brackets to the cap": "[" * (CAP - 2) + "]",
    "3,000 valid instances": _wrap(
        "```json[" + ",".join([f'{{"bbox_2d": [{i % 800},2,{i % 800 + 30},40], "positive_points": [[5,6],[7,8]]}}'
                               for i in range(3000)]) + "]```"
    ),
}


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (840, 840, 3), dtype=np.uint8)
    gt = np.zeros((840, 840), bool)
    gt[300:500, 200:600] = True
    return image, gt


@pytest.mark.parametrize("name", list(ADVERSARIAL))
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_worst_case_completion_scores_under_50ms(benchmark, figures, one_core, frame, name, mode):
    image, gt = frame
    text = ADVERSARIAL[name][:CAP]
    scorer = Scorer("box", parser_mode=mode)
    res = benchmark(lambda: scorer.score(image, gt, [text]))[0]
    assert 0.0 <= res.reward <= 4.0
    t = cpu_median(lambda: scorer.score(image, gt, [text]), 5)
    figures(f"worst case ({mode}): {name}", 1000 * t, "ms", f"{len(text):,} chars")
    assert t < 0.050


# -- box scoring -----------------------------------------------------------------------------

ONE_BOX = f"<think> x </think><answer>```json[{_BOX}]```</answer>"


def test_box_scoring_throughput(benchmark, figures, one_core, frame):
    image, gt = frame
    scorer = Scorer("box")
    res = benchmark(lambda: scorer.score(image, gt, [ONE_BOX]))[0]
    assert res.parsed_ok and res.iou > 0
    rate = 1 / cpu_median(lambda: scorer.score(image, gt, [ONE_BOX]), 15, inner=50)
    figures("box scoring, one box + 2 points at 840²: scores/s (CPU time)", rate, "scores/s")
    assert rate > 1_000


# -- cost of one answer ----------------------------------------------------------------------


def _grid_answer(n: int, points_only: bool = False) -> str:
    side = int(np.ceil(np.sqrt(n)))
    cell = 840 // side
    insts = []
    for i in range(n):
        x, y = (i % side) * cell, (i // side) * cell
        inst = {"positive_points": [[x + cell // 3, y + cell // 3], [x + cell // 2, y + cell // 2]]}
        if not points_only:
            inst = {"bbox_2d": [x + 5, y + 5, x + cell - 5, y + cell - 5], **inst}
        insts.append(inst)
    return "<think>x</think><answer>```json" + json.dumps(insts) + "```</answer>"


TYPICAL = {
    "1 instance": f"<think>x</think><answer>```json[{_BOX}]```</answer>",
    "2 instances": '<think>x</think><answer>```json[{"bbox_2d": [10,200,100,320], '
    f'"positive_points": [[50, 250], [90, 300]]}}, {_BOX}]```</answer>',
}
LARGE = {
    "8 instances": _grid_answer(8),
    "9 instances": _grid_answer(9),
    "64 instances": _grid_answer(64),
    "64 points-only instances": _grid_answer(64, points_only=True),
}


@pytest.mark.parametrize("segmenter", ["box", "grabcut"])
def test_answer_cost_is_bounded(benchmark, figures, one_core, frame, segmenter):
    image, gt = frame
    scorer = Scorer(segmenter, parser_mode="lenient")  # lenient: points-only answers segment too
    reps, inner = (15, 20) if segmenter == "box" else (5, 1)
    cost = {}
    for name, text in {**TYPICAL, **LARGE}.items():
        cost[name] = cpu_median(lambda: scorer.score(image, gt, [text]), reps, inner)
    benchmark.pedantic(lambda: scorer.score(image, gt, [LARGE["64 instances"]]), rounds=2)
    typical = statistics.mean(cost[k] for k in TYPICAL)
    for name, t in cost.items():
        figures(f"answer cost, {segmenter}: {name}", 1000 * t, "ms", f"{t / typical:.1f}x typical")
    worst = max(cost[k] for k in LARGE)
    assert worst <= 10 * typical, cost
