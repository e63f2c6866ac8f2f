"""Agents for refine episodes (``max_turns`` K > 1): the oracle clicker and ``repeat``.

- ``oracle-clicker`` (privileged): the simulated user of interactive segmentation. Turn 1 is
  the ``start`` agent's answer (default ``oracle-box``); each later turn clicks once where
  the mask in force is most wrong: over FN = gt & ~mask and FP = mask & ~gt, the largest
  8-connected component (area ≥ ``min_region``, else the answer is ``stop``), at its
  interior pixel farthest from its boundary (exact Euclidean distance transform, the image
  border counting as boundary; ties: the smallest (y, x)); positive on FN, negative on FP.
  The click joins the instance whose box contains it (else the one with the nearest box
  centre, or anchor point for a point-only instance; none: a new point-only instance).
  ``replace`` mode re-sends every instance with its accumulated clicks; ``add`` mode sends
  only the clicked instance's anchor and the new click.
- ``repeat`` (option ``agent``): re-sends its first answer every turn — what mask feedback
  alone changes (nothing, for a deterministic segmenter).

Both read the turn from ``observation["turn"]`` (0 at the first turn) and the answers so far
from ``observation["answers"]``, so one agent serves any number of episodes at once.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from t2s_env import ConfigError, GeometricPrompt, format_completion, parse_completion
from t2s_env.instructions import is_stop_answer
from t2s_env.prompt import anchor
from t2s_env.refine import merge_prompts

from .base import Agent

#: the answer that ends a refine episode
STOP = "<think> oracle-clicker: the mask is right </think>\n<answer>stop</answer>"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

Click = tuple[str, tuple[int, int]]


def next_click(mask: np.ndarray, gt: np.ndarray, min_region: int = 100) -> Click | None:
    """The oracle's next click for ``mask`` against ``gt`` ((H, W), any 0/1 dtype):
    ``("positive" | "negative", (x, y))`` at the pixel (column x, row y) deepest inside the
    largest connected error region (FN -> positive, FP -> negative); None when that region
    has fewer than ``min_region`` pixels (nothing left worth a click).

    Ties: the larger region; equal areas: FN before FP, then the deeper region, then the
    smallest (y, x); within a region, the smallest (y, x) among its deepest pixels."""
    mask = np.asarray(mask).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if mask.shape != gt.shape or mask.ndim != 2:
        raise ValueError(f"mask {mask.shape} and gt {gt.shape} must be equal (H, W) arrays")
    candidates = []  # (-area, FN first, kind, labels, k, stats): only the largest need a distance transform
    for order, (kind, err) in enumerate((("positive", gt & ~mask), ("negative", mask & ~gt))):
        if not err.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(err.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            area = int(stats[k, cv2.CC_STAT_AREA])
            if area >= min_region:
                candidates.append((-area, order, kind, labels, k, stats[k]))
    if not candidates:
        return None
    top = min(c[:2] for c in candidates)
    best: tuple | None = None
    for neg_area, order, kind, labels, k, st in candidates:
        if (neg_area, order) != top:
            continue
        x, y, w, h = (int(v) for v in st[:4])
        # pad by one so the image border (and the crop's) counts as boundary
        region = np.pad(labels[y : y + h, x : x + w] == k, 1).astype(np.uint8)
        dist = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)  # first max: smallest (y, x)
        # equal depth across regions of equal area: the smallest (y, x) again
        key = (-float(dist[r, c]), y + int(r), x + int(c))
        if best is None or key < best[0]:
            best = (key, kind, (x + int(c), y + int(r)))
    assert best is not None
    return best[1], best[2]


def _inside(box: Sequence[float], x: float, y: float) -> bool:
    """Pixel (x, y)'s centre lies in the box (the prompt convention)."""
    x1, y1, x2, y2 = box
    return x1 <= x + 0.5 <= x2 and y1 <= y + 0.5 <= y2


def _centre(p: GeometricPrompt) -> tuple[float, float]:
    if p.box is not None:
        x1, y1, x2, y2 = p.box
        return (x1 + x2) / 2, (y1 + y2) / 2
    return (p.positive_points or p.negative_points)[0]


def add_click(instances: Sequence[GeometricPrompt], click: Click) -> tuple[list[GeometricPrompt], int]:
    """The instances with ``click`` joined to one of them (or a new point-only instance),
    and that instance's index."""
    kind, (x, y) = click
    out = list(instances)
    live = [i for i, p in enumerate(out) if not p.is_empty]
    target = next((i for i in live if out[i].box is not None and _inside(out[i].box, x, y)), None)
    if target is None and live:
        target = min(live, key=lambda i: ((_centre(out[i])[0] - x) ** 2 + (_centre(out[i])[1] - y) ** 2, i))
    if target is None:
        out.append(GeometricPrompt(positive_points=((x, y),)) if kind == "positive" else GeometricPrompt(negative_points=((x, y),)))
        return out, len(out) - 1
    p = out[target]
    if kind == "positive":
        out[target] = GeometricPrompt(p.box, p.positive_points + ((x, y),), p.negative_points)
    else:
        out[target] = GeometricPrompt(p.box, p.positive_points, p.negative_points + ((x, y),))
    return out, target


def _own_prompts(text: str) -> list[GeometricPrompt] | None:
    """The instances of a completion written by :func:`format_completion`; None otherwise."""
    m = _ANSWER.search(text or "")
    if not m:
        return None
    body = m.group(1).strip()
    if body.startswith("```json") and body.endswith("```"):
        body = body[len("```json") : -3]
    try:
        items = json.loads(body)
        return [GeometricPrompt.from_dict(d) for d in items]
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


class OracleClickerAgent(Agent):
    """The simulated clicker of interactive segmentation (module docstring).

    Options: ``start`` (the agent spec whose answer is turn 1; default ``oracle-box``),
    ``min_region`` (pixels: smaller error regions are not worth a click; the clicker then
    answers ``stop``), ``prompt_variant`` (passed to the start agent).
    """

    name = "oracle-clicker"
    privileged = True
    arg_name = "start"

    def __init__(self, start: "str | Mapping[str, Any]" = "oracle-box", min_region: int = 100,
                 prompt_variant: str = "bbox+2pos") -> None:
        from . import make_agent

        if isinstance(min_region, bool) or not isinstance(min_region, int) or min_region < 1:
            raise ConfigError(f"oracle-clicker option min_region={min_region!r} is invalid: give an integer >= 1 (pixels)")
        options = {"prompt_variant": prompt_variant} if _takes(start, "prompt_variant") else {}
        self.start_spec = start
        self.start = make_agent(start, **options)
        self.min_region = min_region
        self.prompt_variant = prompt_variant

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return self.start.act(observation, info)

    def act_turn(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        answers = tuple(observation.get("answers") or ())
        if int(observation.get("turn", 0)) == 0 or not answers:
            return self.start.act_turn(observation, info)
        if "gt_mask" not in info:
            raise KeyError(f"{self.name} is privileged: it needs info['gt_mask'] (build observations with privileged=True)")
        instances = self.instances(answers, observation)
        click = next_click(observation["mask"], info["gt_mask"], self.min_region)
        if click is None:
            return STOP
        instances, i = add_click(instances, click)
        if info.get("refine_mode", "replace") == "add":
            p = instances[i]
            a = anchor(p)
            kind, point = click
            if a and a[0] == "box":
                one = GeometricPrompt(p.box, (point,) if kind == "positive" else (), (point,) if kind == "negative" else ())
            elif a and a[0] == "pos":
                one = GeometricPrompt(None, (p.positive_points[0],) + ((point,) if kind == "positive" and point != p.positive_points[0] else ()),
                                      (point,) if kind == "negative" else ())
            else:
                one = p
            instances = [one]
        return format_completion([p for p in instances if not p.is_empty], think=f"{self.name}: {click[0]} click at {list(click[1])}")

    def instances(self, answers: Sequence[str], observation: Mapping[str, Any]) -> list[GeometricPrompt]:
        """The instances in force after ``answers``: merged by anchor (an instance with a
        known anchor adds its new points to it; others are appended), stops skipped."""
        h, w = np.asarray(observation["image"]).shape[:2]
        out: tuple[GeometricPrompt, ...] = ()
        for t, text in enumerate(answers):
            if is_stop_answer(text):
                continue
            prompts = _own_prompts(text) if t else None
            if prompts is None:
                parsed = parse_completion(text, self.prompt_variant, mode="lenient", image_size=(w, h))
                prompts = list(parsed.prompts)
            out = merge_prompts(out, tuple(prompts))
        return list(out)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start_spec if isinstance(self.start_spec, str) else self.start.config(),
                "min_region": self.min_region, "prompt_variant": self.prompt_variant}


class RepeatAgent(Agent):
    """Re-sends its first answer (the wrapped ``agent``'s) every turn."""

    name = "repeat"
    arg_name = "agent"

    def __init__(self, agent: "str | Mapping[str, Any]" = "oracle-box", prompt_variant: str = "bbox+2pos") -> None:
        from . import make_agent

        options = {"prompt_variant": prompt_variant} if _takes(agent, "prompt_variant") else {}
        self.agent_spec = agent
        self.inner = make_agent(agent, **options)
        self.privileged = self.inner.privileged

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return self.inner.act(observation, info)

    def act_batch(self, observations, infos) -> list[str]:
        return self.inner.act_batch(observations, infos)

    def act_turn(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        answers = tuple(observation.get("answers") or ())
        if int(observation.get("turn", 0)) == 0 or not answers:
            return self.inner.act_turn(observation, info)
        return answers[0]

    def config(self) -> dict[str, Any]:
        inner = self.inner.config()
        return {"name": self.name, "agent": self.agent_spec if isinstance(self.agent_spec, str) else inner, "inner": inner}


def _takes(spec: Any, option: str) -> bool:
    """Whether the agent class behind ``spec`` takes ``option`` (prompt_variant, for agents
    that build prompts)."""
    import inspect

    from . import agent_class, split_spec

    if isinstance(spec, Mapping):
        if option in spec:
            return False
        spec = spec["name"]
    cls = agent_class(split_spec(str(spec))[0])
    params = inspect.signature(cls.__init__).parameters
    return option in params


__all__ = ["OracleClickerAgent", "RepeatAgent", "STOP", "add_click", "next_click"]
