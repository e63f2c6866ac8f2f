"""The parser's hand repair of single quotes and trailing commas gives what the repair
parser (json_repair, upstream's fallback) gives, on a seeded corpus of near-JSON answers.

The hand repair exists for speed (it is ~10x cheaper than json_repair); these tests are
what makes it safe: every answer of the corpus parses to the same ParsedAnswer through
both paths, and on the inputs where the hand repair applies the decoded JSON is equal too.
"""

from __future__ import annotations

import json
import math
import random

import json_repair
import pytest

from t2s_env import parser
from t2s_env.parser import parse_completion

KEYS = ["bbox_2d", "positive_points", "negative_points", "label", "bbox"]
NUMBERS = ["12", "-3", "0", "840", "305.5", "1e2", "-0.0", "7.25e-1", "NaN", "Infinity", "1000000"]


def _value(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if r < 0.45 or depth > 2:
        return rng.choice(NUMBERS)
    if r < 0.55:
        return rng.choice(["'x'", "'car'", "''", "true", "null", "false"])
    n = rng.choice([0, 1, 2, 2, 4])
    return "[" + ", ".join(_value(rng, depth + 1) for _ in range(n)) + (rng.random() < 0.4) * "," + "]"


def _instance(rng: random.Random) -> str:
    keys = rng.sample(KEYS, rng.choice([1, 2, 2, 3]))
    body = ", ".join(f"'{k}': {_box(rng) if k == 'bbox_2d' else _points(rng) if k.endswith('points') else _value(rng)}" for k in keys)
    return "{" + body + (rng.random() < 0.4) * "," + "}"


def _box(rng: random.Random) -> str:
    return "[" + ", ".join(str(rng.randint(-50, 900)) for _ in range(rng.choice([4, 4, 4, 3]))) + (rng.random() < 0.3) * "," + "]"


def _points(rng: random.Random) -> str:
    pts = [f"[{rng.randint(0, 840)}, {rng.randint(0, 840)}]" for _ in range(rng.choice([1, 2, 2, 4]))]
    return "[" + ", ".join(pts) + (rng.random() < 0.3) * "," + "]"


def _answer(rng: random.Random) -> str:
    text = "[" + ", ".join(_instance(rng) for _ in range(rng.choice([0, 1, 2, 3]))) + (rng.random() < 0.5) * ",\n " + "]"
    # Whitespace variants and, for some, a mutation that json_repair must handle alone.
    text = text.replace(", ", rng.choice([", ", ",", ",\n  ", " , "]))
    if rng.random() < 0.3:
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice(["", ",", "]", "}", "'", " ", ",]", "{"]) + text[i + 1 :]
    return text


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [_answer(rng) for _ in range(n)]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _repair_only(s: str):
    """The parser's fallback as it was: json.loads, else json_repair."""
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        try:
            return json_repair.loads(s, skip_json_loads=True)
        except Exception:  # noqa: BLE001
            return None


def test_corpus_exercises_the_hand_repair():
    texts = corpus(3000, seed=11)
    hand = [t for t in texts if '"' not in t and "\\" not in t]
    assert len(hand) == len(texts)
    repaired = 0
    for t in hand:
        try:
            json.loads(t)
        except ValueError:
            repaired += 1
    assert repaired > 2500  # nearly all need a repair: single quotes


def test_hand_repair_decodes_what_json_repair_decodes():
    texts = corpus(3000, seed=11)
    mismatches = [(t, parser._loads(t), _repair_only(t)) for t in texts]
    mismatches = [m for m in mismatches if not _same(m[1], m[2])]
    assert not mismatches, mismatches[:3]


def test_hand_repair_serves_most_single_quoted_answers():
    hand = [t for t in corpus(3000, seed=11) if parser._hand_repairable(t)]
    assert len(hand) > 1000


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_hand_repair_gives_the_same_parse(monkeypatch, mode):
    texts = [f"<think> t </think>\n<answer>```json{a}```</answer>" for a in corpus(3000, seed=11)]
    ours = [parse_completion(t, "bbox+2pos", mode, (840, 840)) for t in texts]
    monkeypatch.setattr(parser, "_loads", _repair_only)
    reference = [parse_completion(t, "bbox+2pos", mode, (840, 840)) for t in texts]
    diffs = [(t, a, b) for t, a, b in zip(texts, ours, reference) if (a.ok, a.prompts) != (b.ok, b.prompts)]
    assert not diffs, diffs[:3]
    assert sum(a.ok for a in ours) > 300  # the corpus holds many valid answers, not only failures
