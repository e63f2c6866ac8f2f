"""``rl:DIR/policy.pt``: a box policy trained with ``t2s train rl`` (tianshou PPO).

The agent sees what it saw in training: the frame downsampled to the policy's size and the
question's hashed bag of words (:mod:`t2s_env.wrappers`); it answers with the mean action
(deterministic), turned into the protocol's answer in the observed frame, written in the
coordinate frame the policy was trained in (``policy.pt``'s ``meta["coord_frame"]``; ``abs``
pixels for policies that record none). The action is a normalised box, so the agent option
``coord_frame=`` may write it in another frame (``rl:policy=DIR/policy.pt,coord_frame=rel1000``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from t2s_env.coords import get_coord_frame
from t2s_env.wrappers import box_answer

from ..base import Agent
from .policy import PolicySpec, action_from_mean, encode_raw_observation, file_sha256, load_policy


class RLPolicyAgent(Agent):
    """A trained box policy; ``rl:/path/to/policy.pt``."""

    name = "rl"
    arg_name = "policy"

    def __init__(self, policy: str, prompt_variant: str = "bbox+2pos", coord_frame: str | None = None) -> None:
        self.path = str(policy)
        self.actor, self.meta = load_policy(self.path)
        self.sha256 = file_sha256(self.path)
        self.spec: PolicySpec = self.actor.spec
        self.prompt_variant = prompt_variant
        #: the frame answers are written in (declared, so the bench checks it against the protocol's)
        self.coord_frame = get_coord_frame(coord_frame or self.meta.get("coord_frame") or "abs").name

    def act_batch(self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        if not observations:
            return []
        rows = np.concatenate([encode_raw_observation(o, self.spec) for o in observations])
        with torch.no_grad():
            actions = action_from_mean(self.actor.mean(rows))
        out = []
        for obs, action in zip(observations, actions):
            h, w = np.asarray(obs["image"]).shape[:2]
            out.append(box_answer(action, min(h, w), self.prompt_variant, self.spec.n_points, self.spec.presence,
                                  think="rl box policy", coord_frame=self.coord_frame))
        return out

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def config(self) -> dict[str, Any]:
        config = {"name": self.name, "policy": self.path, "policy_sha256": self.sha256,
                  "prompt_variant": self.prompt_variant, "spec": dict(vars(self.spec))}
        if self.coord_frame != "abs":  # abs, what every earlier policy wrote, keeps earlier runs' identity
            config["coord_frame"] = self.coord_frame
        return config

    @property
    def label(self) -> str:
        return f"rl:{self.sha256[:8]}"


__all__ = ["RLPolicyAgent"]
