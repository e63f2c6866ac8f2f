"""A gymnasium vector env (same-step autoreset) seen as a tianshou vector env.

tianshou's ``Collector`` resets each finished sub-env itself; a gymnasium vector env has
already done so inside ``step``. :class:`TianshouVectorEnv` therefore hands out the pending
observations of that reset on ``reset(env_id=...)`` instead of resetting again, so no action
is wasted. Observations are flattened for the policy (:func:`.policy.flatten_obs`); the
step infos tianshou keeps are reduced to numbers, and every step's (reward, iou, json,
think) rows are kept for logging until :meth:`TianshouVectorEnv.drain_scores`.

    venv = t2s_env.make_vec("Think2Seg-Synthetic-v0", 8, wrappers=[BoxAction, NumericObservation])
    collector = tianshou.data.Collector(algo, TianshouVectorEnv(venv), buffer)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .policy import flatten_obs


def step_info(info: dict[str, Any]) -> dict[str, Any]:
    """The scored step's info of a same-step-autoreset vector env (under ``final_info``)."""
    return info.get("final_info", info)


class TianshouVectorEnv:
    """tianshou's vector-env interface over a gymnasium vector env of one-step episodes
    (every sub-env steps together: collect with ``n_step``)."""

    is_async = False

    def __init__(self, venv: Any) -> None:
        self.venv = venv
        self.env_num = venv.num_envs
        self.action_space = venv.single_action_space
        self.observation_space = venv.single_observation_space
        self._pending: np.ndarray | None = None
        self.scores: list[np.ndarray] = []  # rows of (reward, iou, json, think) since the last drain

    def __len__(self) -> int:
        return self.env_num

    @staticmethod
    def _flat(obs: dict[str, np.ndarray]) -> np.ndarray:
        return flatten_obs(obs["image"], obs["question"])

    def reset(self, env_id: Any = None, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        if env_id is None or self._pending is None:
            obs, _ = self.venv.reset(**kwargs)
            self._pending = self._flat(obs)
            ids = np.arange(self.env_num)
        else:
            ids = np.atleast_1d(np.asarray(env_id))
        return self._pending[ids].copy(), np.array([{"env_id": int(i)} for i in ids], dtype=object)

    def step(self, action: np.ndarray, id: Any = None) -> tuple[np.ndarray, ...]:
        ids = np.arange(self.env_num) if id is None else np.atleast_1d(np.asarray(id))
        if len(ids) != self.env_num or not np.array_equal(ids, np.arange(self.env_num)):
            raise NotImplementedError("every sub-env steps together (collect with n_step, not n_episode)")
        obs, rew, term, trunc, info = self.venv.step(np.asarray(action, dtype=np.float32))
        self._pending = self._flat(obs)
        step = step_info(info)
        comps = step["reward_components"]
        env_reward = step.get("env_reward", rew)
        self.scores.append(np.stack([env_reward, step["iou"], comps["json"], comps["think"]], axis=1).astype(np.float64))
        infos = np.array([{"env_id": int(i), "iou": float(step["iou"][i])} for i in range(self.env_num)], dtype=object)
        # The terminal observation is not used (the episode ends); the next one is pending.
        return self._pending.copy(), rew.astype(np.float32), term, trunc, infos

    def drain_scores(self) -> np.ndarray:
        """(N, 4) rows of (env reward, iou, json, think) of the steps since the last drain."""
        out = np.concatenate(self.scores) if self.scores else np.zeros((0, 4))
        self.scores = []
        return out

    def seed(self, seed: Any = None) -> list[Any]:
        return [None] * self.env_num

    def render(self, **kwargs: Any) -> list[Any]:
        return []

    def close(self) -> None:
        self.venv.close()


__all__ = ["TianshouVectorEnv", "step_info"]
