"""Plug-in agents for tests/agents/test_agents.py."""

from __future__ import annotations

from t2s_env import GeometricPrompt, format_completion
from think2seg.agents import Agent


class PluginBoxAgent(Agent):
    """A centred box covering ``fraction`` of each side, with two points inside it; a
    class-level kill switch raises KeyboardInterrupt after some batches (to test resume)."""

    name = "plugin-box"
    arg_name = "fraction"
    batches = 0
    kill_after_batches: int | None = None
    answered: list = []

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = float(fraction)

    def act_batch(self, observations, infos):
        cls = type(self)
        if cls.kill_after_batches is not None and cls.batches >= cls.kill_after_batches:
            raise KeyboardInterrupt
        cls.batches += 1
        return super().act_batch(observations, infos)

    def act(self, observation, info):
        type(self).answered.append(info["sample_id"])
        h, w = observation["image"].shape[:2]
        bw, bh = w * self.fraction, h * self.fraction
        x1, y1 = (w - bw) / 2, (h - bh) / 2
        points = ((int(x1 + bw / 3), int(y1 + bh / 3)), (int(x1 + 2 * bw / 3), int(y1 + 2 * bh / 3)))
        box = (int(x1), int(y1), int(x1 + bw), int(y1 + bh))
        return format_completion([GeometricPrompt(box=box, positive_points=points)], think="plugin")

    def config(self):
        return {"name": self.name, "fraction": self.fraction}


class Anonymous(Agent):
    """An agent that sets no name: it goes by its class name."""

    def act(self, observation, info):
        return format_completion([])


class NotAnAgent:
    """Has an ``act`` method but does not derive from Agent."""

    def act(self, observation, info):
        return ""


def not_a_class(observation, info):
    return ""
