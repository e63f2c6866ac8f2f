"""The ``rl:`` agent writes its answers in the coordinate frame its policy was trained in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2s_env import parse_completion
from t2s_env.wrappers import box_answer
from think2seg.agents.rl import RLPolicyAgent
from think2seg.agents.rl.policy import PolicySpec, action_from_mean, encode_raw_observation, make_actor, save_policy


@pytest.fixture
def observation():
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), "question": "where is the red square?"}


def _policy(path, meta):
    torch.manual_seed(0)
    actor = make_actor(PolicySpec(obs_size=32, question_dim=64, channels=8))
    save_policy(path, actor, meta)
    return actor


def test_answers_are_written_in_the_recorded_frame(tmp_path, observation):
    actor = _policy(tmp_path / "rel.pt", {"coord_frame": "rel1000"})
    with torch.no_grad():
        action = action_from_mean(actor.mean(encode_raw_observation(observation, actor.spec)))[0]
    agent = RLPolicyAgent(str(tmp_path / "rel.pt"))
    assert agent.coord_frame == "rel1000" and agent.config()["coord_frame"] == "rel1000"
    answer = agent.act(observation, {})
    assert answer == box_answer(action, 64, think="rl box policy", coord_frame="rel1000")
    assert answer != box_answer(action, 64, think="rl box policy")  # not pixels of the 64 px frame
    # read in its frame, the box is the pixel answer's (to rel1000's rounding)
    rel = parse_completion(answer, "bbox+2pos", image_size=(64, 64), coord_frame="rel1000")
    px = parse_completion(box_answer(action, 64, think="rl box policy"), "bbox+2pos", image_size=(64, 64))
    assert np.allclose([p.box for p in rel.prompts], [p.box for p in px.prompts], atol=0.01)


def test_policies_without_a_recorded_frame_write_pixels_and_the_option_overrides(tmp_path, observation):
    _policy(tmp_path / "old.pt", {})
    old = RLPolicyAgent(str(tmp_path / "old.pt"))
    assert old.coord_frame == "abs" and "coord_frame" not in old.config()  # earlier runs keep their identity
    override = RLPolicyAgent(str(tmp_path / "old.pt"), coord_frame="rel1")
    assert override.coord_frame == "rel1" and override.act(observation, {}) != old.act(observation, {})
