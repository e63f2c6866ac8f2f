"""Vector envs in which every ``step()`` scores every action.

Think2Seg episodes last one step. Gymnasium's vector envs default to *next-step*
autoreset: the ``step()`` after an episode ends only resets that sub-env, ignores its
action and returns reward 0, so half of all steps were wasted. :func:`make_vec` builds
vector envs with *same-step* autoreset (the reset happens inside the step that ended the
episode; the returned observation is already the next episode's, the final one is in
``info["final_obs"]``).

``async`` mode runs each env in its own process with ``shared_memory=False`` (gymnasium's
shared memory returns stale Text observations) and a ``forkserver`` (or ``spawn``)
context: a plain ``fork`` after torch has run in the parent can deadlock the child on its
first segmenting step (torch's intra-op thread pool does not survive ``fork``).
"""

from __future__ import annotations

import functools
import multiprocessing
from typing import Any, Callable, Literal, Sequence

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from .errors import ConfigError

VectorizationMode = Literal["sync", "async"]


def default_async_context() -> str:
    """``forkserver`` where the platform has it (children fork from a clean server that
    never ran torch), else ``spawn``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _make_one(env_id: str, wrappers: Sequence[Callable[[gym.Env], gym.Env]], env_kwargs: dict[str, Any]) -> gym.Env:
    import t2s_env  # noqa: F401  (a spawned worker must register the env ids first)

    env = gym.make(env_id, **env_kwargs)
    for wrap in wrappers:
        env = wrap(env)
    return env


def make_vec(
    env_id: str,
    num_envs: int,
    vectorization_mode: VectorizationMode = "sync",
    *,
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
    context: str | None = None,
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies of ``gym.make(env_id, **env_kwargs)``.

    Every ``step()`` scores all ``num_envs`` actions (same-step autoreset). ``wrappers``
    are applied to each sub-env in order (e.g. :class:`t2s_env.wrappers.BoxAction`); in
    ``async`` mode they and ``env_kwargs`` must be picklable (module-level callables,
    ``functools.partial``). ``context`` overrides the multiprocessing start method of
    ``async`` mode (default: :func:`default_async_context`).

        venv = t2s_env.make_vec("Think2Seg-Synthetic-v0", 4, "async", segmenter="box")
        obs, info = venv.reset(seed=0)
        obs, rewards, terminated, truncated, info = venv.step(completions)  # 4 scored answers
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    if vectorization_mode not in ("sync", "async"):
        raise ConfigError(f"vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}")
    fns = [functools.partial(_make_one, env_id, tuple(wrappers), dict(env_kwargs)) for _ in range(num_envs)]
    if vectorization_mode == "sync":
        return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    ctx = context or default_async_context()
    if ctx not in multiprocessing.get_all_start_methods():
        raise ConfigError(f"context must be one of {multiprocessing.get_all_start_methods()}, got {ctx!r}")
    return AsyncVectorEnv(fns, shared_memory=False, context=ctx, autoreset_mode=AutoresetMode.SAME_STEP)


__all__ = ["VectorizationMode", "default_async_context", "make_vec"]
