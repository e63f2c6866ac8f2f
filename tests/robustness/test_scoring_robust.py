"""Scoring never raises on malformed actions, refuses unusable reward weights, and parses
each completion once per scoring call (issue 8 items 1, 3 and 4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from t2s_env import parser
from t2s_env.errors import ConfigError
from t2s_env.reward import RewardWeights
from t2s_env.integrations.trl import make_reward_functions
from t2s_env.scoring import Scorer

GOOD = '<think>t</think><answer>```json[{"bbox_2d": [2, 2, 10, 10], "positive_points": [[4, 4], [5, 5]]}]```</answer>'

# trl's conversational completions (lists of {"role", "content"}) with wrong inner types,
# and structured actions whose values are not what a GeometricPrompt needs.
MALFORMED = [
    [{"role": "assistant", "content": None}],
    [{"role": "assistant", "content": 5}],
    [{"role": "assistant", "content": 2.5}],
    [{"role": "assistant", "content": {"text": GOOD}}],
    [{"role": "assistant", "content": b"bytes"}],
    [{"role": "assistant", "content": [{"type": "text", "text": 5}]}],
    [{"role": "assistant", "content": [{"type": "text", "text": None}]}],
    [{"role": "assistant", "content": [{"type": "text", "text": [GOOD]}]}],
    [{"role": "assistant", "content": [5, {"type": "text", "text": GOOD}]}],
    [{"role": "assistant", "content": [None]}],
    [{"role": "assistant", "content": [[GOOD]]}],
    [{"role": "assistant"}],
    [{"role": "user", "content": "q"}, {"role": "assistant"}],
    [{"content": GOOD}, {"role": "assistant", "content": {"a": 1}}],
    [{"role": 3, "content": set()}],
    {"bbox_2d": 5},
    {"bbox_2d": [1, 2, 3, "a"]},
    {"bbox_2d": [10**400, 0, 1, 1]},
    {"bbox_2d": [1, 2, 3, 4], "positive_points": [[1, 2, 3]]},
    {"bbox_2d": [1, 2, 3, 4], "positive_points": 7},
    {"positive_points": {"a": 1}},
    [{"bbox_2d": [1, 2, 3, 4]}, {"positive_points": [[10**400, 1], [1, 1]]}],
    {"bbox_2d": [float("nan")] * 4},
    {"bbox_2d": [float("inf"), 0, 1, 1]},
    ({"bbox_2d": [1, 2]},),
    [None],
    [[None]],
    7,
    None,
    object(),
]


@pytest.fixture
def scene():
    image = np.zeros((16, 16, 3), np.uint8)
    gt = np.zeros((16, 16), bool)
    gt[2:10, 2:10] = True
    return image, gt


def _max_reward(action) -> float:
    # A structured action (dicts / prompts, not messages) that can be written out is scored
    # as its canonical completion, which carries the think/answer tags: a bad value (NaN)
    # fails the parse but may keep the think point. Messages and the rest: no text, 0.
    is_messages = isinstance(action, list) and action and all(isinstance(m, dict) for m in action) and any(
        "role" in m or "content" in m for m in action
    )
    structured = isinstance(action, dict) or (
        isinstance(action, (list, tuple)) and not is_messages and all(isinstance(a, dict) for a in action)
    )
    return 1.0 if structured else 0.0


@pytest.mark.parametrize("action", MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_malformed_actions_are_failed_parses(scene, action, mode):
    image, gt = scene
    res = Scorer("box", parser_mode=mode).score(image, gt, [action])[0]
    assert not res.parsed_ok and not res.json_ok and res.iou == 0.0
    assert res.reward <= _max_reward(action)
    assert res.reward == (1.0 if res.think_ok else 0.0)


def test_malformed_actions_through_the_reward_functions(scene):
    image, gt = scene
    fns = make_reward_functions(Scorer("box"))
    cols = {"image": [image] * len(MALFORMED), "gt_mask": [gt] * len(MALFORMED)}
    iou, json_ok, think = (f(completions=MALFORMED, **cols) for f in fns)
    assert iou == json_ok == [0.0] * len(MALFORMED)
    assert all(t <= _max_reward(a) for t, a in zip(think, MALFORMED))


def test_malformed_message_actions_through_env_step(tmp_path):
    from t2s_env.env import Think2SegEnv
    from tests.datagen import write_rectangle_dataset

    write_rectangle_dataset(tmp_path, split="val", n=2, n_empty=0, seed=0, size=64)
    env = Think2SegEnv(root=str(tmp_path), split="val", segmenter="box", image_size=64)
    env.reset(seed=0)
    for action in MALFORMED[:15]:
        _, reward, terminated, _, info = env.step(action)
        assert reward == 0.0 and terminated and not info["parsed_ok"]
        env.reset()


def test_good_message_still_scores(scene):
    image, gt = scene
    msgs = [
        [{"role": "assistant", "content": GOOD}],
        [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}],
        [{"role": "assistant", "content": ["<think>t</think>", {"type": "text", "text": GOOD[16:]}]}],
    ]
    res = Scorer("box").score(image, gt, msgs)
    assert all(r.parsed_ok and r.json_ok and r.think_ok for r in res)
    assert res[0].reward == res[1].reward == res[2].reward > 3.0


# -- reward weights -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights", [{"iou": math.nan}, {"json": math.inf}, {"think": -math.inf}, {"iou": "abc"}, {"iou": None}]
)
def test_non_finite_reward_weights_are_refused(weights):
    with pytest.raises(ConfigError, match="reward weight"):
        RewardWeights.from_any(weights)
    with pytest.raises(ConfigError, match="reward weight"):
        Scorer("box", reward_weights=weights)


def test_reward_weights_direct_construction_is_checked():
    with pytest.raises(ConfigError):
        RewardWeights(iou=math.nan)
    assert RewardWeights.from_any({"iou": 3, "json": 0.5}).as_list() == [3.0, 0.5, 1.0]


# -- one parse per completion per scoring call ----------------------------------------------


def _count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = parser._loads

    def spy(s):
        calls.append(s)
        return real(s)

    monkeypatch.setattr(parser, "_loads", spy)
    return calls


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_trl_reward_callables_parse_each_completion_once(scene, monkeypatch, mode):
    image, gt = scene
    completions = [
        [{"role": "assistant", "content": GOOD.replace("[2, 2, 10, 10]", f"[{i}, 2, 10, 10]")}] for i in range(6)
    ]
    fns = make_reward_functions(Scorer("box", parser_mode=mode))
    cols = {"image": [image] * 6, "gt_mask": [gt] * 6}
    calls = _count_decodes(monkeypatch)
    out = [f(completions=completions, **cols) for f in fns]
    assert out[1] == out[2] == [1.0] * 6
    assert len(calls) == 6  # one JSON decode per completion, for all three callables


def test_identical_completions_in_a_group_are_parsed_once(scene, monkeypatch):
    image, gt = scene
    calls = _count_decodes(monkeypatch)
    res = Scorer("box").score(image, gt, [GOOD] * 8)
    assert len(calls) == 1 and len({r.reward for r in res}) == 1


def test_format_callables_alone_still_work():
    fns = make_reward_functions(Scorer("box"))
    assert fns[1](completions=[GOOD, "x"]) == [1.0, 0.0]
    assert fns[2](completions=[GOOD, "x"]) == [1.0, 0.0]
    assert json.loads(json.dumps(fns[2](completions=[[{"role": "assistant", "content": GOOD}]]))) == [1.0]
