"""A plug-in agent that declares its coordinate frame, as Qwen3-VL does (rel1000)."""

from __future__ import annotations

import hashlib

from t2s_env import GeometricPrompt, format_completion
from think2seg.agents import Agent


class Rel1000Box(Agent):
    """A box and two points inside it per sample, derived from the sample id, written in
    the 0-1000 frame: scored as pixels, its prompts would land elsewhere."""

    name = "rel1000-box"
    coord_frame = "rel1000"

    def act(self, observation, info):
        d = hashlib.sha1(info["sample_id"].encode()).digest()
        x1, y1 = d[0] % 500, d[1] % 500
        x2, y2 = x1 + 100 + d[2] % 400, y1 + 100 + d[3] % 400
        points = ((x1 + 20, y1 + 20), (x2 - 20, y2 - 20))
        return format_completion([GeometricPrompt(box=(x1, y1, x2, y2), positive_points=points)])

    def config(self):
        return {"name": self.name, "coord_frame": self.coord_frame}
