"""t2s_env.make_vec: every step scores every action (same-step autoreset), async without
shared memory, and no deadlock when async workers start after torch ran in the parent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import t2s_env
from t2s_env.errors import ConfigError
from tests.datagen import write_rectangle_dataset

ENV_ID = "Think2Seg-EarthReason-v0"
ANSWER = '<think>x</think><answer>```json[{"bbox_2d": [1, 1, 20, 20], "positive_points": [[5, 5], [6, 6]]}]```</answer>'


@pytest.fixture(scope="module")
def rects(tmp_path_factory):
    root = tmp_path_factory.mktemp("vec_rects")
    write_rectangle_dataset(root, split="val", n=5, n_empty=1, seed=1, size=96)
    return root


def run_and_count(venv, k: int, seed: int = 0) -> tuple[int, list[float]]:
    """Step ``k`` times; return how many actions were scored against the observation the
    agent saw (the step's sample id equals the one observed before it) and the rewards."""
    obs, info = venv.reset(seed=seed)
    seen = list(info["sample_id"])
    scored, rewards = 0, []
    for _ in range(k):
        obs, reward, terminated, truncated, info = venv.step(tuple([ANSWER] * venv.num_envs))
        final = info.get("final_info", {})
        for i in range(venv.num_envs):
            if "final_info" in info and info["_final_info"][i] and final["sample_id"][i] == seen[i] and reward[i] >= 2:
                scored += 1
        rewards.extend(float(r) for r in reward)
        seen = list(info["sample_id"])
    return scored, rewards


def test_sync_every_step_scores_every_action(rects):
    n, k = 3, 4
    venv = t2s_env.make_vec(ENV_ID, n, "sync", root=str(rects), split="val", segmenter="box", image_size=64)
    try:
        scored, rewards = run_and_count(venv, k)
    finally:
        venv.close()
    assert scored == k * n
    assert min(rewards) >= 2.0  # a well-formed answer earns the format points on every step


def test_default_gymnasium_vector_env_wastes_steps(rects):
    """The failure make_vec fixes: gymnasium's default (next-step) autoreset ignores every
    second action of a one-step env."""
    venv = gym.make_vec(ENV_ID, 3, "sync", root=str(rects), split="val", segmenter="box", image_size=64)
    try:
        scored, rewards = run_and_count(venv, 4)
    finally:
        venv.close()
    assert scored < 4 * 3 and rewards.count(0.0) == 6


ASYNC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import gymnasium as gym
    import numpy as np
    import torch
    import t2s_env
    from tests.env.test_vector import ANSWER, ENV_ID, run_and_count

    if __name__ == "__main__":
        root = sys.argv[1]
        torch.set_num_threads(2)
        # torch runs in the parent first (its thread pool exists when the workers start):
        # with gymnasium's default fork context the first segmenting step then deadlocked.
        env = gym.make(ENV_ID, root=root, split="val", segmenter="box", image_size=64)
        env.reset(seed=0)
        env.step(ANSWER)
        torch.ones(256, 256) @ torch.ones(256, 256)
        venv = t2s_env.make_vec(ENV_ID, 2, "async", root=root, split="val", segmenter="box", image_size=64)
        scored, rewards = run_and_count(venv, 3)
        obs, _ = venv.reset(seed=5)
        questions = list(obs["question"])
        venv.close()
        # gymnasium's default shared memory is still reachable: the env warns (child stderr)
        shared = gym.make_vec(ENV_ID, 2, "async", root=root, split="val", segmenter="box", image_size=64,
                              vector_kwargs={"context": "forkserver"})
        shared.reset(seed=0)
        shared.close()
        print(json.dumps({"scored": scored, "min_reward": min(rewards), "questions": questions}))
    """
)


@pytest.mark.slow
def test_async_scores_every_action_after_torch_ran_in_parent(rects, tmp_path):
    script = tmp_path / "async_check.py"
    script.write_text(ASYNC_SCRIPT)
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run([sys.executable, str(script), str(rects)], capture_output=True, text=True,
                              timeout=240, cwd=repo, env=env)
    except subprocess.TimeoutExpired:  # a deadlock fails instead of hanging the suite
        pytest.fail("async make_vec did not finish within 240 s (deadlock after torch ran in the parent?)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["scored"] == 3 * 2 and out["min_reward"] >= 2.0
    # the questions are the observed samples' own (no stale Text from shared memory)
    qa = {p.stem: json.loads(p.read_text())["questions"][0] for p in (rects / "val" / "QAs").glob("*.json")}
    assert all(q in qa.values() for q in out["questions"])
    assert "shared_memory=True" in proc.stderr and "stale" in proc.stderr


def test_make_vec_rejects_bad_arguments(rects):
    with pytest.raises(ConfigError, match="num_envs"):
        t2s_env.make_vec(ENV_ID, 0, root=str(rects), split="val")
    with pytest.raises(ConfigError, match="vectorization_mode"):
        t2s_env.make_vec(ENV_ID, 2, "threads", root=str(rects), split="val")
    with pytest.raises(ConfigError, match="context"):
        t2s_env.make_vec(ENV_ID, 2, "async", context="nope", root=str(rects), split="val")


def test_make_vec_with_wrappers_gives_numeric_batches(rects):
    import functools

    from t2s_env.wrappers import BoxAction, NumericObservation

    venv = t2s_env.make_vec(ENV_ID, 2, "sync", wrappers=[BoxAction, functools.partial(NumericObservation, size=32)],
                            root=str(rects), split="val", segmenter="box", image_size=64)
    try:
        obs, _ = venv.reset(seed=0)
        assert obs["image"].shape == (2, 32, 32, 3) and obs["question"].shape == (2, 256)
        _, reward, terminated, _, info = venv.step(np.array([[0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4]], np.float32))
        assert terminated.all() and (reward >= 2).all() and info["_final_info"].all()
    finally:
        venv.close()
