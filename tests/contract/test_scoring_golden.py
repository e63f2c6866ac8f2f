"""The faster parser and scoring path give exactly the results of the code before issue 9.

``tests/data/scoring_golden.json`` holds one digest per (completion, configuration) of a
seeded batch, written by the code at commit f6030be (before the speed work) with
``python tests/contract/test_scoring_golden.py --write``. The test recomputes them with today's code.
The batch avoids the one parse rule changed on purpose since (``"positive_points": null``
in lenient mode, issue 10).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parents[1] / "data" / "scoring_golden.json"
SEED = 90210
N_COMPLETIONS = 600

_WS = [" ", "\n", "", "\t", "  \n "]


def _num(rng: random.Random):
    r = rng.random()
    if r < 0.65:
        return rng.randint(-10, 110)
    if r < 0.8:
        return round(rng.uniform(-40, 140), rng.randint(0, 3))
    return rng.choice([0, 100, 64, 0.5, 99.5, -1, 1e6, -1e6, 5e-324, 1e308])


def _instance(rng: random.Random) -> dict:
    d = {}
    if rng.random() < 0.85:
        d["bbox_2d"] = [_num(rng) for _ in range(4)]
    if rng.random() < 0.8:
        d["positive_points"] = [[_num(rng), _num(rng)] for _ in range(rng.choice([2, 2, 2, 2, 2, 1, 4]))]
    if rng.random() < 0.15:
        d["negative_points"] = rng.choice([None, [[_num(rng), _num(rng)] for _ in range(2)]])
    if rng.random() < 0.03:
        d["bbox_2d"] = rng.choice([[1, 2, 3], "box", [True, 1, 2, 3], None])
    return d


def _completion(rng: random.Random) -> str:
    n = rng.choice([0, 1, 1, 1, 2, 2, 3, 5, 12, 40])
    insts = [_instance(rng) for _ in range(n)]
    boxed = [d for d in insts if isinstance(d.get("bbox_2d"), list) and len(d["bbox_2d"]) == 4
             and all(type(v) in (int, float) for v in d["bbox_2d"])]
    if boxed and rng.random() < 0.5:  # duplicates and near-duplicates for the NMS
        x1, y1, x2, y2 = boxed[0]["bbox_2d"]
        h = y2 - y1
        for box in ([x1, y1, x2, y2], [x1, y1, x2, y1 + 2 * h], [x1, y1 + 1, x2, y2 + 1], [x2, y2, x1, y1]):
            if rng.random() < 0.5:
                insts.insert(rng.randint(0, len(insts)), {**boxed[0], "bbox_2d": box})
    body = json.dumps(insts)
    r = rng.random()
    if r < 0.08:
        body = body.replace('"', "'")  # needs the repair parser
    elif r < 0.12:
        body = body.replace("]}", "],}", 1)
    elif r < 0.15:
        body = body[: rng.randint(0, len(body))]  # truncated
    fence = rng.random() < 0.8
    if fence:
        body = f"```json{rng.choice(_WS)}{body}{rng.choice(_WS)}```"
    think = "<think>" + rng.choice(["", "t", "ships dock here", "a</think>b"]) + "</think>"
    if rng.random() < 0.1:
        think = rng.choice(["", "<think>unclosed", "prose "])
    ans = f"<answer>{body}</answer>" if rng.random() < 0.9 else body
    return think + rng.choice(_WS) + ans + rng.choice(["", "", " trailing", "\n"])


def _batch():
    rng = random.Random(SEED)
    return [_completion(rng) for _ in range(N_COMPLETIONS)]


def _scene(k: int, size: int):
    rng = np.random.default_rng(k)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    gt = np.zeros((size, size), bool)
    if k % 5:
        x, y = rng.integers(0, size // 2, 2)
        gt[y : y + size // 3, x : x + size // 4] = True
    return image, gt


def _digest(obj) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


CONFIGS = [  # (variant, mode, frame side)
    ("bbox+2pos", "strict", 100),
    ("bbox+2pos", "lenient", 100),
    ("bbox", "lenient", 64),
    ("bbox+2pos+2neg", "strict", 128),
    ("2pos", "lenient", 100),
]


def compute() -> dict[str, list[str]]:
    from t2s_env.parser import parse_completion
    from t2s_env.scoring import Scorer

    texts = _batch()
    out: dict[str, list[str]] = {}
    for variant, mode, side in CONFIGS:
        key = f"{variant}/{mode}/{side}"
        out["parse:" + key] = [
            _digest(parse_completion(t, variant, mode, (side, side))) for t in texts
        ] + [_digest(parse_completion(t, variant, mode)) for t in texts[:150]]
        scorer = Scorer("box", variant, mode)
        digests = []
        for g in range(0, len(texts), 6):  # groups of 6 completions per image
            image, gt = _scene(g, side)
            for r in scorer.score(image, gt, texts[g : g + 6]):
                digests.append(
                    _digest(
                        (r.iou, r.intersection, r.union, r.json_ok, r.think_ok, r.parsed_ok, r.answer_empty,
                         r.gt_empty, r.pred_empty, r.prompts, r.reward, sorted(r.reward_components.items()), r.error)
                    )
                )
        out["score:" + key] = digests
    return out


def test_results_identical_to_the_code_before_the_speed_work():
    expected = json.loads(GOLDEN.read_text())
    got = compute()
    assert set(got) == set(expected)
    for key in expected:
        bad = [i for i, (a, b) in enumerate(zip(got[key], expected[key])) if a != b]
        assert len(got[key]) == len(expected[key]) and not bad, f"{key}: {len(bad)} differ, first {bad[:5]}"


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(json.dumps(compute(), indent=0) + "\n")
