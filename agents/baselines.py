"""Baseline agents: answers that ignore the question, to anchor the leaderboard.

- ``full-image``: one instance whose box is the whole image.
- ``center-box``: one centred box covering ``fraction`` of each side (``center-box:0.3``).
- ``random-box``: one random box, seeded by ``(seed, sample_id)`` (``random-box:7``), so
  a sample's answer does not depend on batch order or on which samples ran before.
- ``empty``: always ``[]`` ("no target"); scores N-Acc 1 and IoU 0 elsewhere.

Each instance follows the prompt variant: a box when the variant asks for one, and the
variant's number of positive (and negative) points. :class:`PromptAgent` is the shared
base, also used by the oracles.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np

from t2s_env import ConfigError, GeometricPrompt, PromptVariant, format_completion, get_variant

from .base import Agent

Box = tuple[int, int, int, int]


class PromptAgent(Agent):
    """An agent that builds :class:`GeometricPrompt` instances and answers with their
    canonical completion. Subclasses implement :meth:`prompts`.

    ``prompt_variant`` fixes what an instance contains (box, point counts); the harness
    passes the run's variant.
    """

    #: the text inside <think>, so a reader of samples.jsonl sees who answered
    think: str = ""

    def __init__(self, prompt_variant: "str | PromptVariant" = "bbox+2pos") -> None:
        self.variant = get_variant(prompt_variant)

    def prompts(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> list[GeometricPrompt]:
        raise NotImplementedError

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return format_completion(self.prompts(observation, info), think=self.think or self.name)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "prompt_variant": self.variant.name}


def image_size(observation: Mapping[str, Any]) -> tuple[int, int]:
    """(width, height) of the observed image."""
    h, w = np.asarray(observation["image"]).shape[:2]
    return int(w), int(h)


def points_in_box(box: Box, n: int) -> tuple[tuple[int, int], ...]:
    """``n`` integer points spread along the box's main diagonal (at k/(n+1)), each the
    corner of a pixel inside the box (columns x1 … x2-1, rows y1 … y2-1)."""
    x1, y1, x2, y2 = box
    out = []
    for k in range(1, n + 1):
        t = k / (n + 1)
        x = min(max(x1 + int(t * (x2 - x1)), x1), max(x1, x2 - 1))
        y = min(max(y1 + int(t * (y2 - y1)), y1), max(y1, y2 - 1))
        out.append((x, y))
    return tuple(out)


def points_outside_box(box: Box, width: int, height: int, n: int) -> tuple[tuple[int, int], ...]:
    """``n`` pixels of the image outside the box (margin midpoints first, then corners);
    empty when fewer than ``n`` exist (a box covering the image has no outside)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    candidates = [
        (x1 // 2, cy), ((x2 + width) // 2, cy), (cx, y1 // 2), (cx, (y2 + height) // 2),
        (0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1),
    ]
    outside = []
    for x, y in candidates:
        inside = x1 <= x < x2 and y1 <= y < y2
        if not inside and 0 <= x < width and 0 <= y < height and (x, y) not in outside:
            outside.append((x, y))
    return tuple(outside[:n]) if len(outside) >= n else ()


def box_instance(box: Box, variant: PromptVariant, width: int, height: int) -> GeometricPrompt:
    """One instance for ``box`` as the variant asks: the box, points inside, points outside."""
    return GeometricPrompt(
        box=box if variant.use_box else None,
        positive_points=points_in_box(box, variant.n_positive),
        negative_points=points_outside_box(box, width, height, variant.n_negative),
    )


class FullImageAgent(PromptAgent):
    """One instance covering the whole image."""

    name = "full-image"

    def prompts(self, observation, info):
        w, h = image_size(observation)
        return [box_instance((0, 0, w, h), self.variant, w, h)]


class CenterBoxAgent(PromptAgent):
    """One centred box whose sides are ``fraction`` of the image's."""

    name = "center-box"
    arg_name = "fraction"

    def __init__(self, fraction: float = 0.5, prompt_variant: "str | PromptVariant" = "bbox+2pos") -> None:
        super().__init__(prompt_variant)
        if not isinstance(fraction, (int, float)) or not 0 < float(fraction) <= 1:
            raise ConfigError(f"center-box fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    def prompts(self, observation, info):
        w, h = image_size(observation)
        bw, bh = max(1, round(w * self.fraction)), max(1, round(h * self.fraction))
        x1, y1 = (w - bw) // 2, (h - bh) // 2
        return [box_instance((x1, y1, x1 + bw, y1 + bh), self.variant, w, h)]

    def config(self):
        return {**super().config(), "fraction": self.fraction}


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, sample_id) (not on Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


class RandomBoxAgent(PromptAgent):
    """One box with sides drawn in [min_fraction, max_fraction] of the image's, placed
    uniformly; seeded per sample by ``(seed, sample_id)``."""

    name = "random-box"
    arg_name = "seed"

    def __init__(
        self,
        seed: int = 0,
        min_fraction: float = 0.1,
        max_fraction: float = 0.6,
        prompt_variant: "str | PromptVariant" = "bbox+2pos",
    ) -> None:
        super().__init__(prompt_variant)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"random-box seed must be an integer, got {seed!r}")
        if not 0 < float(min_fraction) <= float(max_fraction) <= 1:
            raise ConfigError(
                f"random-box needs 0 < min_fraction <= max_fraction <= 1, got {min_fraction!r}, {max_fraction!r}"
            )
        self.seed = seed
        self.min_fraction = float(min_fraction)
        self.max_fraction = float(max_fraction)

    def prompts(self, observation, info):
        w, h = image_size(observation)
        rng = sample_rng(self.seed, str(info.get("sample_id", "")))
        fw, fh = rng.uniform(self.min_fraction, self.max_fraction, 2)
        bw, bh = max(1, round(w * fw)), max(1, round(h * fh))
        x1 = int(rng.integers(0, w - bw + 1))
        y1 = int(rng.integers(0, h - bh + 1))
        return [box_instance((x1, y1, x1 + bw, y1 + bh), self.variant, w, h)]

    def config(self):
        return {**super().config(), "seed": self.seed, "min_fraction": self.min_fraction,
                "max_fraction": self.max_fraction}


class EmptyAgent(PromptAgent):
    """Always answers ``[]``: "there is no target"."""

    name = "empty"

    def prompts(self, observation, info):
        return []

    def act_batch(self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        return [format_completion([], think=self.name)] * len(observations)


__all__ = [
    "CenterBoxAgent",
    "EmptyAgent",
    "FullImageAgent",
    "PromptAgent",
    "RandomBoxAgent",
    "box_instance",
    "points_in_box",
    "points_outside_box",
    "sample_rng",
]
