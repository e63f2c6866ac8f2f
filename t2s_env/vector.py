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
first segmenting step (torch's intra-op thread pool does not survive ``fork``). An env that
finds itself in a gymnasium worker that does use shared memory warns
(:func:`warn_if_shared_memory_worker`).
"""

from __future__ import annotations

import functools
import multiprocessing
import sys
import warnings
from typing import Any, Callable, Literal, Sequence

import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from .errors import ConfigError

VectorizationMode = Literal["sync", "async"]


def default_async_context() -> str:
    """``forkserver`` where the platform has it (children fork from a clean server that
    never ran torch), else ``spawn``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _make_one(env_id: str, wrappers: Sequence[Callable[[gym.Env], gym.Env]], env_kwargs: dict[str, Any]) -> gym.Env:
    from t2s_env.registration import register_envs

    register_envs()  # a spawned worker must register the env ids first
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


def shared_memory_async_worker_env() -> Any:
    """The outermost env of the gymnasium AsyncVectorEnv worker we run in, when that worker
    passes observations through shared memory; else None. (Found on the call stack: the
    worker function holds ``shared_memory`` and ``env`` as locals.)"""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_async_worker" and "gymnasium" in frame.f_code.co_filename:
            return frame.f_locals.get("env") if frame.f_locals.get("shared_memory") else None
        frame = frame.f_back
    return None


def has_text_space(space: spaces.Space) -> bool:
    """Whether ``space`` is or holds (in a Dict or Tuple) a ``spaces.Text``."""
    if isinstance(space, spaces.Text):
        return True
    if isinstance(space, spaces.Dict):
        return any(has_text_space(s) for s in space.spaces.values())
    if isinstance(space, spaces.Tuple):
        return any(has_text_space(s) for s in space.spaces)
    return False


def warn_if_shared_memory_worker() -> None:
    """Warn (at the caller's line, e.g. in ``env.reset``) when called inside a gymnasium
    AsyncVectorEnv worker whose env has Text spaces and that passes them through shared
    memory: such observations come back stale."""
    env = shared_memory_async_worker_env()
    if env is not None and has_text_space(getattr(env, "observation_space", spaces.Box(0, 1))):
        warnings.warn(
            "Think2SegEnv runs in a gymnasium AsyncVectorEnv with shared_memory=True: its Text "
            "observations (the question) come back stale. Use t2s_env.make_vec(..., "
            "vectorization_mode='async') or AsyncVectorEnv(..., shared_memory=False).",
            RuntimeWarning,
            stacklevel=2,
        )


__all__ = [
    "VectorizationMode",
    "default_async_context",
    "has_text_space",
    "make_vec",
    "shared_memory_async_worker_env",
    "warn_if_shared_memory_worker",
]
