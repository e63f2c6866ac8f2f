"""Leave-one-out (RLOO) advantages for answers grouped by observation.

With one-step episodes the return is the reward. When several answers share an observation
(sub-envs seeded alike, ``t2s train rl group_size=G``), an answer's baseline is the mean
reward of the *other* answers to the same observation: unbiased, and it knows how hard
this image is without a critic.

>>> obs = np.array([[1, 2], [3, 4], [1, 2]], np.float32)
>>> groups = observation_groups(obs)
>>> groups.tolist()
[0, 1, 0]
>>> leave_one_out_advantages(np.array([1.0, 5.0, 3.0]), groups, fallback=np.array([0.0, 0.5, 0.0])).tolist()
[-2.0, 0.5, 2.0]
"""

from __future__ import annotations

import numpy as np


def observation_groups(obs: np.ndarray) -> np.ndarray:
    """(N,) id per row, equal exactly for rows with byte-equal observations (ids in order of
    first appearance)."""
    rows = np.ascontiguousarray(np.asarray(obs).reshape(len(obs), -1))
    ids: dict[bytes, int] = {}
    return np.array([ids.setdefault(row.tobytes(), len(ids)) for row in rows], dtype=np.int64)


def leave_one_out_advantages(rewards: np.ndarray, groups: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each answer's reward minus the mean reward of the other answers in its group
    (float64); ``fallback`` (e.g. reward − V) where a group holds one answer."""
    rewards = np.asarray(rewards, dtype=np.float64)
    count = np.bincount(groups)[groups]
    total = np.bincount(groups, weights=rewards)[groups]
    others = (total - rewards) / np.maximum(count - 1, 1)
    return np.where(count > 1, rewards - others, fallback)


__all__ = ["leave_one_out_advantages", "observation_groups"]
