"""Score a box policy on every image of a split once: the validation curve of
``t2s train rl`` and its heuristic baselines, under the same frame and segmenter.

    evaluator = SplitEvaluator(NumericObservation(BoxAction(gym.make(env_id, split="val")), size=64))
    evaluator.evaluate(actor)   # {"reward": ..., "giou": ...}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .policy import action_from_mean, flatten_obs


class SplitEvaluator:
    """Every image of ``env``'s split once (each image's first/seeded question), answered
    by the deterministic policy: mean reward and gIoU (×100) under the env's protocol.
    ``env`` answers a normalised box (:class:`t2s_env.wrappers.BoxAction`) and observes
    :class:`t2s_env.wrappers.NumericObservation`'s arrays, as in training."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.n = len(env.unwrapped.dataset)
        self.rows = []
        for i in range(self.n):
            obs, _ = env.reset(options={"index": i})
            self.rows.append(flatten_obs(obs["image"][None], obs["question"][None]))
        self.obs = np.concatenate(self.rows)

    def score(self, actions: np.ndarray) -> dict[str, float]:
        """Mean reward and gIoU of one action per image (rows in dataset order)."""
        rewards, ious = [], []
        for i, action in enumerate(actions):
            self.env.reset(options={"index": i})
            _, reward, _, _, info = self.env.step(action)
            rewards.append(reward)
            ious.append(info["iou"])
        return {"reward": float(np.mean(rewards)), "giou": 100.0 * float(np.mean(ious))}

    def evaluate(self, actor: Any) -> dict[str, float]:
        """The actor's mean actions, scored (:meth:`score`)."""
        with torch.no_grad():
            return self.score(action_from_mean(actor.mean(self.obs)))

    def baselines(self, seed: int) -> dict[str, float]:
        """gIoU of the heuristic baselines' boxes under this evaluator (same frame and
        segmenter as the curve): centred boxes, the full image, and a uniformly random box."""
        dim = self.env.action_space.shape[0]

        def fixed(box: list[float]) -> np.ndarray:
            row = np.full(dim, 1.0, np.float32)  # presence (if any) says "there is a target"
            row[:4] = box
            return np.tile(row, (self.n, 1))

        out = {f"center-box:{f}": self.score(fixed([(1 - f) / 2, (1 - f) / 2, (1 + f) / 2, (1 + f) / 2]))["giou"]
               for f in (0.3, 0.5, 0.7)}
        out["full-image"] = self.score(fixed([0, 0, 1, 1]))["giou"]
        out["random box"] = self.evaluate_random(seed, repeats=3)["giou"]
        return out

    def evaluate_random(self, seed: int, repeats: int = 5) -> dict[str, float]:
        """A uniformly random Box action per image, averaged over ``repeats`` draws."""
        rng = np.random.default_rng(seed)
        dim = self.env.action_space.shape[0]
        runs = [self.score(rng.uniform(0, 1, (self.n, dim)).astype(np.float32)) for _ in range(repeats)]
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}

    def close(self) -> None:
        self.env.close()


__all__ = ["SplitEvaluator"]
