"""t2s_env.wrappers: Box actions → the protocol's answer, numeric observations."""

from __future__ import annotations

import functools

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import t2s_env  # noqa: F401
from t2s_env.env import Think2SegEnv
from t2s_env.errors import ConfigError
from t2s_env.parser import parse_completion
from t2s_env.wrappers import BoxAction, NumericObservation, box_answer, downsample, encode_question
from tests.datagen import write_rectangle_dataset

SIZE = 96


@pytest.fixture(scope="module")
def rects(tmp_path_factory):
    root = tmp_path_factory.mktemp("wrap_rects")
    info = write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=4, size=SIZE)
    return root, {d["id"]: d["rects"] for d in info}


def base_env(root, **kw):
    kw.setdefault("image_size", SIZE)
    return Think2SegEnv(root=str(root), split="val", segmenter="box", **kw)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
@pytest.mark.parametrize("wrap", [
    BoxAction,
    functools.partial(BoxAction, n_points=2, presence=True),
    NumericObservation,
    lambda e: NumericObservation(BoxAction(e), size=32, question_dim=64),
], ids=["box", "box+points+presence", "numeric-obs", "both"])
def test_check_env(rects, wrap):
    env = wrap(base_env(rects[0]))
    check_env(env, skip_render_check=True)
    assert env.observation_space.contains(env.reset(seed=0)[0])


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
    env = NumericObservation(BoxAction(gym.make("Think2Seg-EarthReason-v0", root=str(rects[0]), split="val",
                                                segmenter="box", image_size=SIZE)), size=16)
    obs, _ = env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(env.action_space.sample())
    assert terminated and 2.0 <= reward <= 4.0 and obs["image"].shape == (16, 16, 3)
