"""Throughput of RL-style use: reset+step episodes and vector-env steps through the
numeric wrappers (pytest-benchmark).

    .venv/bin/pytest tests/perf/test_bench_vector.py --benchmark-only -p no:cacheprovider

Episodes are one step, so an RL loop pays a reset (load the image, resize it to the frame)
for every scored action. The env caches framed samples (``frame_cache_mb``); these
benchmarks time the cached and the uncached path in the same run (one core), at the RL
frame (128², observations 64²) and at the protocol frame (840²). Figures are printed in the
"Think2Seg benchmark figures" summary; docs/performance.md records them.
"""

from __future__ import annotations

import functools
import statistics
import time

import numpy as np
import pytest

import t2s_env
from t2s_env import Think2SegEnv
from t2s_env.wrappers import BoxAction, NumericObservation

RL_FRAME, RL_OBS = 128, 64


def _synthetic_train():
    from t2s_env.datasets import make_dataset

    try:
        return make_dataset("synthetic:train")
    except Exception as e:  # the embedded set is generated on first use; may be unavailable
        pytest.skip(f"synthetic dataset unavailable: {type(e).__name__}: {e}")


def _episodes_per_second(env, actions, n: int) -> float:
    t = time.perf_counter()
    for k in range(n):
        env.reset()
        env.step(actions[k % len(actions)])
    return n / (time.perf_counter() - t)


@pytest.mark.parametrize("frame", [RL_FRAME, 840])
def test_reset_step_episodes(benchmark, figures, one_core, frame):
    """reset + step of a `box` env through BoxAction + NumericObservation(64), random
    images of the train split; cached frames vs ``frame_cache_mb=0`` (the old path)."""
    dataset = _synthetic_train()
    rng = np.random.default_rng(0)
    actions = [rng.uniform(0, 1, 4).astype(np.float32) for _ in range(64)]

    def make(cache_mb):
        env = NumericObservation(BoxAction(Think2SegEnv(dataset, segmenter="box", image_size=frame,
                                                        frame_cache_mb=cache_mb)), size=RL_OBS)
        env.reset(seed=0)
        return env

    cached = make(1024)
    for i in range(len(dataset)):  # warm the cache (an RL run revisits every image many times)
        cached.reset(options={"index": i})
    cursor = {"k": 0}

    def one_episode():
        cached.reset()
        cursor["k"] += 1
        return cached.step(actions[cursor["k"] % len(actions)])

    out = benchmark.pedantic(one_episode, rounds=200, warmup_rounds=5)
    assert out[2] is True
    uncached = make(0)
    n_cold = 40 if frame == 840 else 80
    cold = statistics.median(_episodes_per_second(uncached, actions, n_cold) for _ in range(2))
    warm = statistics.median(_episodes_per_second(cached, actions, 400) for _ in range(3))
    figures(f"reset+step episodes/s, box, frame {frame}², obs {RL_OBS}², cached frames (1 core)", warm,
            "episodes/s", f"uncached {cold:.0f}/s in the same run: {warm / cold:.1f}x")


@pytest.mark.parametrize("mode,num_envs", [("sync", 8), ("async", 2)])
def test_vector_env_steps(benchmark, figures, mode, num_envs):
    """Scored actions per second of make_vec through the wrappers (same-step autoreset:
    every step scores num_envs actions). Async startup is outside the timing."""
    dataset = _synthetic_train()
    wrappers = [BoxAction, functools.partial(NumericObservation, size=RL_OBS)]
    venv = t2s_env.make_vec("Think2Seg-Synthetic-v0", num_envs, mode, wrappers=wrappers, split="train",
                            segmenter="box", image_size=RL_FRAME)
    try:
        for i in range(len(dataset)):  # warm every sub-env's frame cache (one per sub-env)
            venv.reset(options={"index": i})
        venv.reset(seed=0)
        rng = np.random.default_rng(0)
        batch = rng.uniform(0, 1, (num_envs, 4)).astype(np.float32)
        out = benchmark.pedantic(venv.step, args=(batch,), rounds=50, warmup_rounds=2)
        assert out[2].all()
        n = 400 // num_envs
        t = time.perf_counter()
        for _ in range(n):
            venv.step(batch)
        rate = n * num_envs / (time.perf_counter() - t)
    finally:
        venv.close()
    figures(f"make_vec {mode} × {num_envs}, box, frame {RL_FRAME}², obs {RL_OBS}²: scored actions/s", rate,
            "actions/s", "2 shared cores")
