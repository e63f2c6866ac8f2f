"""A numeric interface for classical RL: ``Box`` actions and array observations.

- :class:`BoxAction`: the action is a normalised box ``(x1, y1, x2, y2)`` of the frame
  (plus, if chosen, ``n_points`` positive points ``(x, y)``, and a presence score whose
  value below the middle of the range answers "no target", ``[]``), in [0, 1]
  (``action_range="unit"``, the default) or in [-1, 1] (``"symmetric"``, what
  Stable-Baselines3 recommends). It is turned into the protocol's answer text, so the
  env's reward and info are unchanged.
- :class:`NumericObservation`: the frame downsampled to ``size`` × ``size`` (64–128 px
  suit small CNNs) plus a hashed bag of words of the question (no hub model).

    env = NumericObservation(BoxAction(gym.make("Think2Seg-Synthetic-v0", segmenter="box")), size=64)

Both record their constructor arguments (gymnasium's ``RecordConstructorArgs``), so
``env.spec`` names the whole stack and ``gym.make(env.spec)`` rebuilds it, and both pass
gymnasium's and Stable-Baselines3's ``check_env`` (docs/wrappers.md).

The functions behind them (:func:`box_answer`, :func:`unit_action`, :func:`downsample`,
:func:`encode_question`) are public so that an agent evaluated on the raw env (e.g. in
``t2s bench``) sees and answers exactly as in training.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Sequence

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .coords import from_pixels
from .errors import ConfigError, did_you_mean
from .instructions import PromptVariant, format_completion, get_variant
from .prompt import GeometricPrompt

MIN_OBS_SIZE, MAX_OBS_SIZE = 16, 256
DEFAULT_OBS_SIZE = 64
DEFAULT_QUESTION_DIM = 256
#: BoxAction's action ranges: name -> (low, high) of every action value
ACTION_RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}
_WORD = re.compile(r"[a-z0-9]+")


# -- actions --------------------------------------------------------------------------------


def _inside_points(box: tuple[int, int, int, int], n: int) -> list[tuple[int, int]]:
    """``n`` pixels on the box's main diagonal at k/(n+1) (inside: columns x1…x2-1)."""
    x1, y1, x2, y2 = box
    return [
        (min(x1 + int(k / (n + 1) * (x2 - x1)), x2 - 1), min(y1 + int(k / (n + 1) * (y2 - y1)), y2 - 1))
        for k in range(1, n + 1)
    ]


def _outside_points(box: tuple[int, int, int, int], size: int, n: int) -> list[tuple[int, int]]:
    """``n`` pixels outside the box (margin midpoints, then corners); [] if too few exist."""
    x1, y1, x2, y2 = box
    cx, cy, last = (x1 + x2) // 2, (y1 + y2) // 2, size - 1
    out: list[tuple[int, int]] = []
    for x, y in ((x1 // 2, cy), ((x2 + size) // 2, cy), (cx, y1 // 2), (cx, (y2 + size) // 2),
                 (0, 0), (last, 0), (0, last), (last, last)):
        if not (x1 <= x < x2 and y1 <= y < y2) and 0 <= x < size and 0 <= y < size and (x, y) not in out:
            out.append((x, y))
    return out[:n] if len(out) >= n else []


def box_answer(
    action: Sequence[float] | np.ndarray,
    frame_size: int,
    variant: "str | PromptVariant" = "bbox+2pos",
    n_points: int = 0,
    presence: bool = False,
    think: str = "box policy",
    coord_frame: str = "abs",
) -> str:
    """The protocol answer for a normalised action (see :class:`BoxAction` for the layout).

    Coordinates are clipped to [0, 1] and sorted, then scaled to pixels of a ``frame_size``
    square frame; a box is at least one pixel wide and high. Points the action does not
    give are placed as the baselines do: on the box's diagonal (positive) and outside it
    (negative), as many as ``variant`` asks. The answer is written in ``coord_frame``
    (:mod:`t2s_env.coords`: ``abs`` pixels, ``rel1000``, ``rel1``), the env's frame.
    """
    a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64).ravel(), nan=0.5), 0.0, 1.0)
    want = 4 + 2 * n_points + int(presence)
    if a.size != want:
        raise ValueError(f"expected an action of {want} values, got {a.size}")
    variant = get_variant(variant)
    if presence and a[-1] < 0.5:
        return format_completion([], think=think)
    s = frame_size
    x1, x2 = sorted((int(round(a[0] * s)), int(round(a[2] * s))))
    y1, y2 = sorted((int(round(a[1] * s)), int(round(a[3] * s))))
    x1, y1 = min(x1, s - 1), min(y1, s - 1)
    box = (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))
    given = [(min(int(a[4 + 2 * k] * s), s - 1), min(int(a[5 + 2 * k] * s), s - 1)) for k in range(n_points)]
    positive = (given + _inside_points(box, variant.n_positive))[: max(variant.n_positive, n_points)]
    prompt = GeometricPrompt(
        box=box if variant.use_box else None,
        positive_points=tuple(positive),
        negative_points=tuple(_outside_points(box, s, variant.n_negative)),
    )
    return format_completion(from_pixels([prompt], coord_frame, s, s), think=think)


def unit_action(action: Sequence[float] | np.ndarray, action_range: str = "unit") -> np.ndarray:
    """``action`` of :class:`BoxAction`'s ``action_range`` mapped onto [0, 1] (float64),
    the layout :func:`box_answer` reads: ``"symmetric"`` maps [-1, 1] linearly."""
    low, high = _action_bounds(action_range)
    a = np.asarray(action, dtype=np.float64)
    return a if (low, high) == (0.0, 1.0) else (a - low) / (high - low)


def _action_bounds(action_range: str) -> tuple[float, float]:
    if not isinstance(action_range, str) or action_range not in ACTION_RANGES:
        raise ConfigError(f"action_range must be one of {', '.join(ACTION_RANGES)}, got {action_range!r}"
                          + did_you_mean(str(action_range), ACTION_RANGES))
    return ACTION_RANGES[action_range]


class BoxAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """``Box(low, high, (4 + 2·n_points + presence,), float32)`` actions → answer text.

    Layout: ``x1, y1, x2, y2`` (normalised box corners, in any order), then ``n_points``
    positive points ``x, y``, then the presence score when ``presence=True`` (below the
    middle of the range answers ``[]``). The env's reward and info pass through unchanged.

    ``action_range``: ``"unit"`` (default) is ``Box(0, 1)``, 0 and 1 the frame's edges:
    what ``t2s train rl`` and its saved policies use. ``"symmetric"`` is ``Box(-1, 1)``,
    -1 and 1 the edges (mapped by :func:`unit_action`): what Stable-Baselines3's
    ``check_env`` asks for (its Gaussian policies start at mean 0, standard deviation 1,
    and clip samples to the box: on [0, 1] about two thirds of the first samples fall
    outside and land on an edge). Values outside the range are clipped to it.

    The arguments are recorded, so ``gym.make(env.spec)`` rebuilds the wrapper.
    """

    def __init__(self, env: gym.Env, n_points: int = 0, presence: bool = False, action_range: str = "unit") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, n_points=n_points, presence=presence, action_range=action_range)
        gym.ActionWrapper.__init__(self, env)
        if isinstance(n_points, bool) or not isinstance(n_points, int) or not 0 <= n_points <= 8:
            raise ConfigError(f"n_points must be an integer in [0, 8], got {n_points!r}")
        low, high = _action_bounds(action_range)
        self.n_points = n_points
        self.presence = bool(presence)
        self.action_range = action_range
        self.action_space = spaces.Box(low, high, (4 + 2 * n_points + int(presence),), np.float32)

    def action(self, action: Any) -> str:
        base = self.env.unwrapped
        return box_answer(unit_action(action, self.action_range), base.image_size, base.variant, self.n_points,
                          self.presence, coord_frame=base.coord_frame)


# -- observations ---------------------------------------------------------------------------


def downsample(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 → a new (size, size, 3) uint8 array (area averaging)."""
    image = np.asarray(image)
    if image.shape[:2] == (size, size):
        return image.copy()
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def encode_question(question: str, dim: int = DEFAULT_QUESTION_DIM) -> np.ndarray:
    """Hashed bag of words and word bigrams, L2-normalised: (dim,) float32 in [0, 1].

    Words are lower-case runs of ``[a-z0-9]``; each word and bigram sets the bucket
    ``crc32(token) % dim`` (a stable hash: the same across processes and runs)."""
    words = _WORD.findall(str(question).lower())
    tokens = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    vec = np.zeros(dim, np.float32)
    for t in tokens:
        vec[zlib.crc32(t.encode()) % dim] = 1.0
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm else vec


class NumericObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """``Dict(image=Box(0, 255, (size, size, 3), uint8), question=Box(0, 1, (question_dim,), float32))``.

    The arguments are recorded, so ``gym.make(env.spec)`` rebuilds the wrapper."""

    def __init__(self, env: gym.Env, size: int = DEFAULT_OBS_SIZE, question_dim: int = DEFAULT_QUESTION_DIM) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size, question_dim=question_dim)
        gym.ObservationWrapper.__init__(self, env)
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_OBS_SIZE <= size <= MAX_OBS_SIZE:
            raise ConfigError(f"observation size must be an integer in [{MIN_OBS_SIZE}, {MAX_OBS_SIZE}], got {size!r}")
        if isinstance(question_dim, bool) or not isinstance(question_dim, int) or not 8 <= question_dim <= 65536:
            raise ConfigError(f"question_dim must be an integer in [8, 65536], got {question_dim!r}")
        self.size = size
        self.question_dim = question_dim
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "question": spaces.Box(0.0, 1.0, (question_dim,), np.float32),
            }
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        return {
            "image": downsample(observation["image"], self.size),
            "question": encode_question(observation["question"], self.question_dim),
        }


__all__ = [
    "ACTION_RANGES",
    "BoxAction",
    "DEFAULT_OBS_SIZE",
    "DEFAULT_QUESTION_DIM",
    "NumericObservation",
    "box_answer",
    "downsample",
    "encode_question",
    "unit_action",
]
