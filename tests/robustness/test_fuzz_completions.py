"""Completion fuzzer (issue 8): any text a policy can emit scores in [0, 4], never raises.

A fixed seed and a bounded count (2,000 completions, a few seconds): mutations of realistic
answers (character flips, inserted tags, fences, brackets and whitespace runs, truncation,
repetition, JSON junk values) plus trl-shaped message lists, scored by the box segmenter
under both parser modes and both prompt geometries, and through the trl reward callables.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from t2s_env.integrations.trl import make_reward_functions
from t2s_env.scoring import Scorer

pytestmark = pytest.mark.slow

SEED = 8
COUNT = 2000

BASES = [
    '<think> docks on the left </think>\n<answer>```json[{"bbox_2d": [10,20,60,70], '
    '"positive_points": [[30, 40], [35, 45]]}]```</answer>',
    '<think>x</think><answer>```json[{"bbox_2d": [5,5,30,30], "positive_points": [[10,10],[12,12]]}, '
    '{"bbox_2d": [40,40,90,95], "positive_points": [[60,60],[70,70]]}]```</answer>',
    "<think> nothing </think><answer>```json[]```</answer>",
    "<think>t</think><answer>[{'bbox_2d': [1,2,30,40], 'positive_points': [[5,6],[7,8]],},]</answer>",
    '<answer>[{"positive_points": [[20, 20], [25, 25]]}]</answer>',
]
PIECES = [
    "<think>", "</think>", "<answer>", "</answer>", "```json", "```", "[", "]", "{", "}", ",", '"',
    "\n" * 50, " " * 40, "\t", "\u3000", "null", "NaN", "Infinity", "-1e999", "1e308", "true",
    '"bbox_2d"', '"positive_points"', '"negative_points"', "[[", "]]", ":", "\\", "\x00", "\ud800",
    "[" * 30, "{" * 30,
]
JUNK = [None, True, "x", -1e308, 1e308, 10**30, -0.0, [], {}, [[[]]], [1, 2], [1e9, -1e9, 1e9, -1e9]]


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        i = rng.randint(0, len(text))
        if op == 0:
            text = text[:i] + rng.choice(PIECES) + text[i:]
        elif op == 1 and text:
            j = rng.randrange(len(text))
            text = text[:j] + chr(rng.randrange(0, 0x3000)) + text[j + 1 :]
        elif op == 2:
            text = text[:i]
        elif op == 3:
            text = text[:i] + text[i : i + rng.randint(1, 40)] * rng.randint(2, 30) + text[i:]
        elif op == 4 and text:
            j = rng.randint(i, len(text))
            text = text[:i] + text[j:]
        elif op == 5:
            text = text.replace(rng.choice(["10", "30", "[[", "],", '"p', "json"]), json.dumps(rng.choice(JUNK)), 1)
        else:
            text = rng.choice(PIECES) * rng.randint(1, 200) + text
    return text[:210_000]


def _structured(rng: random.Random) -> str:
    insts = []
    for _ in range(rng.choice([0, 1, 2, 3, 70])):
        inst = {}
        for key, n in (("bbox_2d", 4), ("positive_points", 2), ("negative_points", 2)):
            if rng.random() < 0.7:
                if key == "bbox_2d":
                    inst[key] = [rng.choice([rng.uniform(-1e3, 1e3), rng.choice(JUNK)]) for _ in range(n)]
                else:
                    inst[key] = rng.choice(
                        [[[rng.uniform(-50, 150), rng.uniform(-50, 150)] for _ in range(n)], rng.choice(JUNK)]
                    )
        insts.append(inst)
    body = json.dumps(insts, allow_nan=True)
    return f"<think>t</think><answer>```json{body}```</answer>"


def _corpus():
    rng = random.Random(SEED)
    out = []
    for k in range(COUNT):
        r = rng.random()
        if r < 0.6:
            out.append(_mutate(rng, rng.choice(BASES)))
        elif r < 0.85:
            out.append(_structured(rng))
        else:
            out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60))))
    return out


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(SEED)
    image = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    gt = np.zeros((100, 100), bool)
    gt[20:70, 10:60] = True
    return image, gt


@pytest.mark.parametrize("mode,geometry", [("strict", "clipped"), ("lenient", "clipped"), ("lenient", "raw")])
def test_fuzzed_completions_score_in_range(scene, mode, geometry):
    image, gt = scene
    scorer = Scorer("box", parser_mode=mode, prompt_geometry=geometry)
    corpus = _corpus()
    results = []
    for g in range(0, len(corpus), 8):  # GRPO-sized groups
        results += scorer.score(image, gt, corpus[g : g + 8])
    assert len(results) == COUNT
    for r in results:
        assert math.isfinite(r.reward) and 0.0 <= r.reward <= 4.0
        assert 0.0 <= r.iou <= 1.0
    # the corpus reaches every part of the reward
    assert sum(r.parsed_ok for r in results) > 100 and sum(r.think_ok for r in results) > 100
    assert sum(r.iou > 0 for r in results) > 50


def test_fuzzed_messages_through_the_reward_functions(scene):
    image, gt = scene
    corpus = _corpus()[:400]
    rng = random.Random(SEED)
    completions = []
    for text in corpus:
        shape = rng.randrange(3)
        if shape == 0:
            completions.append([{"role": "assistant", "content": text}])
        elif shape == 1:
            completions.append([{"role": "assistant", "content": [{"type": "text", "text": text}]}])
        else:
            completions.append([{"role": "assistant", "content": rng.choice([text, *JUNK])}])
    fns = make_reward_functions(Scorer("box"))
    cols = {"image": [image] * len(completions), "gt_mask": [gt] * len(completions)}
    parts = [f(completions=completions, **cols) for f in fns]
    for iou, js, th in zip(*parts):
        total = 2 * iou + js + th
        assert math.isfinite(total) and 0.0 <= total <= 4.0
