"""The library pieces behind ``t2s train rl``: advantages, grouped PPO, the tianshou vector
env adapter, the training wrappers, and the run folder."""

from __future__ import annotations

import doctest
import importlib

import gymnasium as gym
import numpy as np
import pytest

from t2s_env.errors import CheckpointError, ConfigError
from t2s_env.wrappers import RandomDihedral, RewardShaping

pytest.importorskip("tianshou")

from think2seg.agents.rl.advantages import leave_one_out_advantages, observation_groups  # noqa: E402
from think2seg.agents.rl.venv import TianshouVectorEnv  # noqa: E402
from think2seg.scripts import run_folder  # noqa: E402


@pytest.mark.parametrize("module", ["t2s_env.wrappers", "think2seg.agents.rl.advantages",
                                    "think2seg.agents.rl.group_ppo", "think2seg.scripts.run_folder"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_leave_one_out_on_a_hand_made_group():
    # one image answered 4 times (rewards 1, 2, 3, 6), another once
    obs = np.array([[7, 7]] * 4 + [[1, 0]], np.uint8)
    groups = observation_groups(obs)
    assert groups.tolist() == [0, 0, 0, 0, 1]
    adv = leave_one_out_advantages(np.array([1.0, 2.0, 3.0, 6.0, 5.0]), groups, fallback=np.full(5, -1.0))
    # 1 − (2+3+6)/3, 2 − (1+3+6)/3, 3 − (1+2+6)/3, 6 − (1+2+3)/3; the lone answer keeps the fallback
    assert adv.tolist() == pytest.approx([1 - 11 / 3, 2 - 10 / 3, 3 - 3, 6 - 2, -1.0])
    assert adv[:4].sum() == pytest.approx(4 / 3 * (12 - 12))  # a group's advantages sum to 0


def test_make_group_ppo_is_plain_ppo_without_groups():
    from tianshou.algorithm import PPO

    from think2seg.agents.rl.group_ppo import GroupPPO, make_group_ppo

    assert issubclass(GroupPPO, PPO)
    assert make_group_ppo.__defaults__ is None  # group_size is always named by the caller


class _Probe(gym.Env):
    """A 4×4 image with one marked pixel at x=3, y=0; records the last action."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})
    action_space = gym.spaces.Box(0, 1, (4,), np.float32)

    def reset(self, *, seed=None, options=None):
        image = np.zeros((4, 4, 3), np.uint8)
        image[0, 3] = 255
        return {"image": image}, {}

    def step(self, action):
        self.last = np.asarray(action)
        return self.reset()[0], 0.0, True, False, {}


def test_random_dihedral_round_trip_over_all_eight_symmetries():
    env = RandomDihedral(_Probe())
    seen = set()
    for seed in range(64):
        obs, _ = env.reset(seed=seed)
        seen.add(env.transform)
        y, x = (int(v) for v in np.argwhere(obs["image"][:, :, 0])[0])
        action = np.array([x / 4, y / 4, (x + 1) / 4, (y + 1) / 4], np.float32)  # the marked pixel's box
        env.step(action)
        back = env.unwrapped.last
        box = [min(back[0], back[2]), min(back[1], back[3]), max(back[0], back[2]), max(back[1], back[3])]
        assert np.allclose(box, [3 / 4, 0, 1, 1 / 4]), (env.transform, back)
    assert len(seen) == 8
    # seeded resets draw the same transforms again
    assert [env.reset(seed=s) and env.transform for s in range(8)] == [env.reset(seed=s) and env.transform for s in range(8)]


def test_training_wrappers_record_their_arguments():
    env = RewardShaping(_Probe(), giou=1.0, hit=0.5, hit_radius=0.1, cover=0.25)
    assert env._saved_kwargs == {"giou": 1.0, "hit": 0.5, "hit_radius": 0.1, "cover": 0.25}
    assert RandomDihedral(_Probe())._saved_kwargs == {}


class _FakeVec:
    """A same-step-autoreset gymnasium vector env of 2 sub-envs; counts resets."""

    num_envs = 2
    single_action_space = gym.spaces.Box(0, 1, (4,), np.float32)
    single_observation_space = None

    def __init__(self):
        self.resets = 0
        self.t = 0

    def _obs(self):
        return {"image": np.full((2, 2, 2, 3), self.t, np.uint8), "question": np.full((2, 3), 0.5, np.float32)}

    def reset(self, **kwargs):
        self.resets += 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        info = {"final_info": {"iou": np.array([0.5, 0.25]), "reward_components": {"json": np.ones(2), "think": np.zeros(2)}}}
        return self._obs(), np.array([1.5, 2.0]), np.ones(2, bool), np.zeros(2, bool), info


def test_tianshou_vector_env_hands_out_the_autoreset_observations():
    fake = _FakeVec()
    venv = TianshouVectorEnv(fake)
    obs, infos = venv.reset()
    assert fake.resets == 1 and obs.shape == (2, 2 * 2 * 3 + 3) and [i["env_id"] for i in infos] == [0, 1]
    nxt, rew, term, _, infos = venv.step(np.zeros((2, 4), np.float32))
    assert rew.dtype == np.float32 and term.all() and [i["iou"] for i in infos] == [0.5, 0.25]
    again, _ = venv.reset(env_id=[1])  # the Collector's reset of a finished sub-env: no new reset
    assert fake.resets == 1 and np.array_equal(again, nxt[[1]])
    assert venv.drain_scores().tolist() == [[1.5, 0.5, 1.0, 0.0], [2.0, 0.25, 1.0, 0.0]]
    assert venv.drain_scores().shape == (0, 4)
    with pytest.raises(NotImplementedError, match="n_step"):
        venv.step(np.zeros((1, 4), np.float32), id=[0])


def test_run_folder_resume_and_step_checkpoints(tmp_path, capsys):
    import torch

    refusal = ConfigError("no such checkpoint")
    kw = dict(latest=run_folder.latest_step_checkpoint, is_checkpoint=lambda p: p.endswith(".pt"), refusal=refusal)
    assert run_folder.resolve_resume(None, tmp_path, **kw) is None
    assert run_folder.resolve_resume("auto", tmp_path / "new", **kw) is None
    assert "starting fresh" in capsys.readouterr().err
    net, other = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    saved_rng = torch.get_rng_state()  # what each checkpoint records
    for step in (9, 10, 2):
        run_folder.save_step_checkpoint(tmp_path, step, "f", net, env_steps=step)
    assert run_folder.resolve_resume("auto", tmp_path, **kw) == tmp_path / "step_10.pt"  # numeric, not text order
    with pytest.raises(ConfigError, match="no such checkpoint"):
        run_folder.resolve_resume(str(tmp_path / "x.txt"), tmp_path, **kw)
    torch.rand(3)  # moves the RNG on: loading restores it
    assert run_folder.load_step_checkpoint(tmp_path / "step_9.pt", "f", "t2s train rl", other)["env_steps"] == 9
    assert torch.equal(other.weight, net.weight) and torch.equal(torch.get_rng_state(), saved_rng)
    with pytest.raises(CheckpointError, match="is not a `t2s train rl` checkpoint"):
        run_folder.load_step_checkpoint(tmp_path / "step_9.pt", "other", "t2s train rl", other)
    with pytest.raises(CheckpointError, match="does not fit"):
        run_folder.load_step_checkpoint(tmp_path / "step_9.pt", "f", "t2s train rl", torch.nn.Linear(3, 1))
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        run_folder.load_step_checkpoint(tmp_path / "bad.pt", "f", "t2s train rl", other)


def test_output_dir_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="it or a folder above it is a file") as err:
        run_folder.prepare_output_dir(tmp_path / "file" / "run")
    assert "\n" not in str(err.value)


def test_rl_output_dir_under_a_file_is_one_line(tmp_path, capsys):
    from t2s_env.cli import main

    (tmp_path / "file").write_text("x")
    rc = main(["train", "rl", "--config", "scripts/configs/rl_ppo_synthetic.yaml", f"output_dir={tmp_path / 'file' / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("t2s: error: output_dir ") and "is a file" in err and err.count("\n") == 1
