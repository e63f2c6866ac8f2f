"""t2s_env.wrappers: Box actions → the protocol's answer, numeric observations; the stack
built with ``gym.make`` as the README does passes gymnasium's and Stable-Baselines3's
checkers and is rebuilt from ``env.spec``."""

from __future__ import annotations

import functools
import warnings

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import t2s_env  # noqa: F401
from t2s_env.errors import ConfigError
from t2s_env.parser import parse_completion
from t2s_env.wrappers import (BoxAction, NumericObservation, box_answer, downsample, encode_question,
                              unit_action)
from tests.datagen import write_rectangle_dataset

SIZE = 96
#: gymnasium's check_env always says this of a wrapped env (it would rather see env.unwrapped)
UNWRAPPED_NOTE = "ignore:.*different from the unwrapped"


@pytest.fixture(scope="module")
def rects(tmp_path_factory):
    root = tmp_path_factory.mktemp("wrap_rects")
    info = write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=4, size=SIZE)
    return root, {d["id"]: d["rects"] for d in info}


def base_env(root, **kw):
    kw.setdefault("image_size", SIZE)
    return gym.make("Think2Seg-EarthReason-v0", root=str(root), split="val", segmenter="box", **kw)


def readme_stack(**box_kw):
    """The README's stack: the embedded synthetic set, built with gym.make."""
    return NumericObservation(BoxAction(gym.make("Think2Seg-Synthetic-v0", segmenter="box"), **box_kw))


@pytest.mark.filterwarnings(UNWRAPPED_NOTE)
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("box_kw", [{}, {"action_range": "symmetric"}], ids=["unit", "symmetric"])
def test_the_readme_stack_passes_gymnasiums_check_env(box_kw):
    """Every check, the render modes and the rebuild from env.spec included; any other
    warning fails."""
    env = readme_stack(**box_kw)
    check_env(env)
    assert env.observation_space.contains(env.reset(seed=0)[0])


@pytest.mark.filterwarnings(UNWRAPPED_NOTE)
@pytest.mark.parametrize("wrap", [
    BoxAction,
    functools.partial(BoxAction, n_points=2, presence=True),
    functools.partial(BoxAction, n_points=1, presence=True, action_range="symmetric"),
    NumericObservation,
    lambda e: NumericObservation(BoxAction(e), size=32, question_dim=64),
], ids=["box", "box+points+presence", "symmetric+points+presence", "numeric-obs", "both"])
def test_check_env(rects, wrap):
    env = wrap(base_env(rects[0]))
    check_env(env, skip_render_check=True)
    assert env.observation_space.contains(env.reset(seed=0)[0])


def test_gym_make_rebuilds_the_stack_from_its_spec(rects):
    env = NumericObservation(BoxAction(base_env(rects[0]), n_points=2, presence=True, action_range="symmetric"),
                             size=32, question_dim=64)
    wrappers = [(w.name, w.entry_point, w.kwargs) for w in env.spec.additional_wrappers]
    assert wrappers == [
        ("BoxAction", "t2s_env.wrappers:BoxAction", {"n_points": 2, "presence": True, "action_range": "symmetric"}),
        ("NumericObservation", "t2s_env.wrappers:NumericObservation", {"size": 32, "question_dim": 64}),
    ]
    rebuilt = gym.make(env.spec)
    assert rebuilt.spec == env.spec
    assert rebuilt.action_space == env.action_space and rebuilt.observation_space == env.observation_space
    assert isinstance(rebuilt, NumericObservation) and isinstance(rebuilt.env, BoxAction)
    assert (rebuilt.size, rebuilt.question_dim) == (32, 64)
    assert (rebuilt.env.n_points, rebuilt.env.presence, rebuilt.env.action_range) == (2, True, "symmetric")
    # the same episode: the same observation and reward
    action = np.array([-0.5, -0.5, 0.5, 0.5, -0.2, -0.2, 0.2, 0.2, 1.0], np.float32)
    (a_obs, _), (b_obs, _) = env.reset(seed=2), rebuilt.reset(seed=2)
    np.testing.assert_array_equal(a_obs["image"], b_obs["image"])
    assert env.step(action)[1] == rebuilt.step(action)[1]


def test_stable_baselines3_check_env():
    """SB3's own checker: the default [0, 1] box draws exactly its symmetric-range advice
    (the documented choice); ``action_range="symmetric"`` draws no warning at all."""
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    for box_kw, expected in (({}, ["symmetric and normalized Box action space"]), ({"action_range": "symmetric"}, [])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sb3_checker.check_env(readme_stack(**box_kw), warn=True)
        messages = [str(w.message) for w in caught]
        assert len(messages) == len(expected) and all(e in m for e, m in zip(expected, messages)), messages


def test_symmetric_actions_answer_like_unit_ones(rects):
    root, boxes = rects
    sid = next(k for k, v in boxes.items() if len(v) == 1)
    (x1, y1, x2, y2), = boxes[sid]
    unit = np.array([x1, y1, x2, y2, 0.9], np.float32) / np.array([SIZE] * 4 + [1], np.float32)
    results = []
    for action_range, action in (("unit", unit), ("symmetric", unit * 2 - 1)):
        env = BoxAction(base_env(root), presence=True, action_range=action_range)
        env.reset(options={"sample_id": sid})
        _, reward, _, _, info = env.step(action)
        results.append((reward, info["prompts"]))
    assert results[0] == results[1] and results[0][0] == pytest.approx(4.0)
    # symmetric presence below 0 (the middle of [-1, 1]) answers "no target"
    assert "```json[]```" in box_answer(unit_action([-1, -1, 1, 1, -0.1], "symmetric"), SIZE, presence=True)
    np.testing.assert_allclose(unit_action([-1, 0, 1], "symmetric"), [0, 0.5, 1])
    with pytest.raises(ConfigError, match="action_range must be one of unit, symmetric.*did you mean symmetric"):
        BoxAction(base_env(root), action_range="symmetrc")


def test_box_action_scores_like_the_text_answer(rects):
    root, boxes = rects
    sid = next(k for k, v in boxes.items() if len(v) == 1)
    (x1, y1, x2, y2), = boxes[sid]
    env = BoxAction(base_env(root))
    env.reset(options={"sample_id": sid})
    action = np.array([x1, y1, x2, y2], np.float32) / SIZE
    _, reward, terminated, _, info = env.step(action)
    assert terminated and info["iou"] == pytest.approx(1.0) and reward == pytest.approx(4.0)
    # the same answer as text through the raw env: identical reward and info
    raw = base_env(root)
    raw.reset(options={"sample_id": sid})
    _, raw_reward, _, _, raw_info = raw.step(box_answer(action, SIZE))
    assert raw_reward == reward and raw_info["prompts"] == info["prompts"]
    # corners in any order give the same box
    env.reset(options={"sample_id": sid})
    _, swapped, _, _, _ = env.step(action[[2, 3, 0, 1]])
    assert swapped == reward


@pytest.mark.parametrize("coord_frame", ["abs", "rel1000", "rel1"])
def test_box_action_answers_in_the_envs_coordinate_frame(rects, coord_frame):
    """The tight box of the target scores IoU 1 whatever units the env reads answers in
    (rel1 keeps two decimals in the answer text: 1/96 px short at worst)."""
    root, boxes = rects
    sid = next(k for k, v in boxes.items() if len(v) == 1)
    (x1, y1, x2, y2), = boxes[sid]
    env = BoxAction(base_env(root, coord_frame=coord_frame))
    env.reset(options={"sample_id": sid})
    _, reward, _, _, info = env.step(np.array([x1, y1, x2, y2], np.float32) / SIZE)
    assert info["coord_frame"] == coord_frame
    assert info["iou"] == pytest.approx(1.0, abs=0.0 if coord_frame != "rel1" else 0.1), info["prompts"]


def test_box_answer_follows_the_variant_and_the_points():
    text = box_answer([0.25, 0.5, 0.75, 1.0], 100)
    answer = parse_completion(text, "bbox+2pos", "strict", (100, 100))
    assert answer.ok and len(answer.prompts) == 1
    p = answer.prompts[0]
    assert p.box == (25, 50, 75, 100) and len(p.positive_points) == 2
    assert all(25 <= x < 75 and 50 <= y < 100 for x, y in p.positive_points)
    chosen = box_answer([0.2, 0.2, 0.6, 0.6, 0.3, 0.4, 0.5, 0.5], 100, n_points=2)
    assert parse_completion(chosen, "bbox+2pos", "strict", (100, 100)).prompts[0].positive_points == ((30, 40), (50, 50))
    neg = parse_completion(box_answer([0.2, 0.2, 0.6, 0.6], 100, "bbox+2pos+2neg"), "bbox+2pos+2neg", "strict", (100, 100))
    assert neg.ok and len(neg.prompts[0].negative_points) == 2
    assert "```json[]```" in box_answer([0, 0, 1, 1, 0.2], 100, presence=True)
    assert "```json[]```" not in box_answer([0, 0, 1, 1, 0.8], 100, presence=True)
    # degenerate and non-finite actions still give a parseable one-pixel box
    for bad in ([0.5, 0.5, 0.5, 0.5], [np.nan, 0, 2, -1]):
        a = parse_completion(box_answer(bad, 100), "bbox+2pos", "strict", (100, 100))
        x1, y1, x2, y2 = a.prompts[0].box
        assert a.ok and x2 > x1 and y2 > y1
    with pytest.raises(ValueError):
        box_answer([0, 0, 1], 100)


def test_presence_answers_no_target(rects):
    root, boxes = rects
    sid = next(k for k, v in boxes.items() if not v)
    env = BoxAction(base_env(root), presence=True)
    env.reset(options={"sample_id": sid})
    _, reward, _, _, info = env.step(np.array([0, 0, 1, 1, 0.0], np.float32))
    assert reward == pytest.approx(4.0) and info["pred_empty"] and info["gt_empty"]


def test_numeric_observation(rects):
    root, _ = rects
    raw = base_env(root)
    env = NumericObservation(base_env(root), size=32, question_dim=128)
    obs, _ = env.reset(seed=3)
    raw_obs, _ = raw.reset(seed=3)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    np.testing.assert_array_equal(obs["image"], cv2.resize(raw_obs["image"], (32, 32), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(obs["question"], encode_question(raw_obs["question"], 128))
    assert obs["question"].dtype == np.float32 and np.linalg.norm(obs["question"]) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        NumericObservation(base_env(root), size=8)
    with pytest.raises(ConfigError):
        BoxAction(base_env(root), n_points=-1)


def test_encode_question_is_a_stable_bag_of_words():
    a = encode_question("Where could ships be repaired?", 256)
    assert np.array_equal(a, encode_question("where could SHIPS be repaired", 256))  # case and punctuation
    assert not np.array_equal(a, encode_question("Where might crops be grown?", 256))
    assert encode_question("", 64).sum() == 0
    # crc32 buckets: the same vector in every process (no salted hash)
    assert np.flatnonzero(encode_question("ships", 1024)).tolist() == [int(__import__("zlib").crc32(b"ships") % 1024)]


def test_downsample_returns_new_memory():
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    same = downsample(image, 16)
    assert np.array_equal(same, image) and not np.shares_memory(same, image)
    assert downsample(np.zeros((40, 60, 3), np.uint8), 20).shape == (20, 20, 3)


def test_gym_make_with_wrappers(rects):
    env = NumericObservation(BoxAction(base_env(rects[0])), size=16)
    obs, _ = env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(env.action_space.sample())
    assert terminated and 2.0 <= reward <= 4.0 and obs["image"].shape == (16, 16, 3)
