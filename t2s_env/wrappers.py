"""A numeric interface for classical RL: ``Box`` actions and array observations.

- :class:`BoxAction`: the action is a normalised box ``(x1, y1, x2, y2)`` of the frame
  (plus, if chosen, ``n_points`` positive points ``(x, y)``, and a presence score whose
  value below the middle of the range answers "no target", ``[]``), in [0, 1]
  (``action_range="unit"``, the default) or in [-1, 1] (``"symmetric"``, what
  Stable-Baselines3 recommends). It is turned into the protocol's answer text, so the
  env's reward and info are unchanged.
- :class:`NumericObservation`: the frame downsampled to ``size`` × ``size`` (64–128 px
  suit small CNNs) plus a hashed bag of words of the question (no hub model).
- For training (``t2s train rl``): :class:`RewardShaping` adds dense terms read from the GT
  mask to the reward, :class:`RandomDihedral` flips/transposes each episode's image and
  maps the action back.

    env = NumericObservation(BoxAction(gym.make("Think2Seg-Synthetic-v0", segmenter="box")), size=64)

All record their constructor arguments (gymnasium's ``RecordConstructorArgs``), so
``env.spec`` names the whole stack and ``gym.make(env.spec)`` rebuilds it, and the two above pass
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


# -- training signal and augmentation (t2s train rl) ----------------------------------------


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Normalised (x1, y1, x2, y2) of the mask's bounding box; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])


def generalized_iou(a: np.ndarray, b: np.ndarray) -> float:
    """GIoU of two boxes (x1, y1, x2, y2): IoU minus the share of their enclosing box that
    neither covers; in [-1, 1], and informative when they do not overlap.

    >>> generalized_iou(np.array([0, 0, 1, 1]), np.array([2, 0, 3, 1]))
    -0.3333333333333333
    """
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return float(inter / union - (hull - union) / hull) if union > 0 and hull > 0 else 0.0


class RewardShaping(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Training reward = env reward + ``giou`` · GIoU(action box, GT mask's box)
    + ``hit`` · exp(−d / ``hit_radius``), d the distance (frame-side units) from the action
    box's centre to the nearest target pixel (0 inside the target)
    + ``cover`` · the share of the target's pixels inside the box (edges rounded to pixels).
    An empty target adds nothing.

    The IoU of a box that misses the target is 0 whatever its distance, so most early
    actions carry no signal; GIoU grows as the box moves towards the target. GIoU aims at the
    box around *all* instances, and a small target's IoU stays tiny even when it is found
    (a 4 px pool in a 20 px box: 0.04); the hit term pays for landing on any instance, so
    finding small and scattered targets is worth learning. The cover term asks for boxes
    that contain the object, as GrabCut needs. Below a :class:`BoxAction` (the action is the
    normalised box) of an env made with ``privileged=True``: the GT comes from its reset
    info's ``gt_mask``, which is removed, so the policy never sees it.
    ``info["env_reward"]`` keeps the env's own reward (what is logged).

    >>> env = gym.make("Think2Seg-Synthetic-v0", segmenter="box", image_size=64, privileged=True)
    >>> env = RewardShaping(BoxAction(env), cover=1.0)
    >>> _, info = env.reset(seed=0)
    >>> "gt_mask" in info
    False
    >>> _, reward, _, _, info = env.step(np.array([0, 0, 1, 1], np.float32))  # the full frame covers it all
    >>> round(float(reward - info["env_reward"]), 6)
    1.0
    """

    def __init__(self, env: gym.Env, giou: float = 0.0, hit: float = 0.0, hit_radius: float = 0.03125,
                 cover: float = 0.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, giou=giou, hit=hit, hit_radius=hit_radius, cover=cover)
        gym.Wrapper.__init__(self, env)
        self.giou, self.hit, self.hit_radius, self.cover = giou, hit, hit_radius, cover
        self._gt: np.ndarray | None = None
        self._distance: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        mask = np.asarray(info.pop("gt_mask"), dtype=bool)
        self._gt = mask_box(mask)
        self._distance = None
        self._mask = mask if self.cover and self._gt is not None else None
        if self.hit and self._gt is not None:
            # distance of every pixel to the nearest target pixel, in frame-side units
            self._distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) / max(mask.shape)
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["env_reward"] = reward
        if self._gt is not None:
            a = np.clip(np.asarray(action, dtype=np.float64)[:4], 0, 1)
            box = np.array([min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])])
            if self.giou:
                reward = reward + self.giou * generalized_iou(box, self._gt)
            if self._distance is not None:
                h, w = self._distance.shape
                col = min(int((box[0] + box[2]) / 2 * w), w - 1)
                row = min(int((box[1] + box[3]) / 2 * h), h - 1)
                reward = reward + self.hit * float(np.exp(-self._distance[row, col] / self.hit_radius))
            if self._mask is not None:
                h, w = self._mask.shape
                x1, x2 = int(round(box[0] * w)), int(round(box[2] * w))
                y1, y2 = int(round(box[1] * h)), int(round(box[3] * h))
                reward = reward + self.cover * float(self._mask[y1:y2, x1:x2].sum() / self._mask.sum())
        return obs, reward, terminated, truncated, info


class RandomDihedral(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Data augmentation: each episode shows the image flipped/transposed at random (one of
    the 8 symmetries of the square) and maps the action's coordinates back, so the env
    scores the answer in its own frame. Above :class:`NumericObservation` (a dict with a
    square ``image``) and a :class:`BoxAction` with ``action_range="unit"`` (x, y pairs in
    [0, 1]). A seeded reset seeds the draws.

    >>> env = gym.make("Think2Seg-Synthetic-v0", segmenter="box", image_size=64)
    >>> env = RandomDihedral(NumericObservation(BoxAction(env), size=32))
    >>> obs, _ = env.reset(seed=3)
    >>> env.transform  # (flip x, flip y, transpose) of this episode
    (True, False, True)
    >>> obs["image"].shape
    (32, 32, 3)
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._t = (False, False, False)

    @property
    def transform(self) -> tuple[bool, bool, bool]:
        """(flip x, flip y, transpose) shown this episode (the transpose applied first)."""
        return self._t

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng(seed + 7919)
        elif not hasattr(self, "_rng"):
            self._rng = np.random.default_rng()
        self._t = tuple(bool(v) for v in self._rng.integers(0, 2, 3))
        return self._obs(obs), info

    def _obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flip_x, flip_y, transpose = self._t
        image = obs["image"]
        if transpose:
            image = image.transpose(1, 0, 2)
        if flip_x:
            image = image[:, ::-1]
        if flip_y:
            image = image[::-1]
        return {**obs, "image": np.ascontiguousarray(image)}

    def step(self, action: Any):
        a = np.array(action, dtype=np.float32, copy=True)
        flip_x, flip_y, transpose = self._t
        xs, ys = np.arange(0, len(a) - len(a) % 2, 2), np.arange(1, len(a) - len(a) % 2, 2)
        # undo in reverse order: flips first, then the transpose
        if flip_y:
            a[ys] = 1 - a[ys]
        if flip_x:
            a[xs] = 1 - a[xs]
        if transpose:
            a[xs], a[ys] = a[ys].copy(), a[xs].copy()
        obs, reward, terminated, truncated, info = self.env.step(a)
        return self._obs(obs), reward, terminated, truncated, info


__all__ = [
    "ACTION_RANGES",
    "BoxAction",
    "DEFAULT_OBS_SIZE",
    "DEFAULT_QUESTION_DIM",
    "NumericObservation",
    "RandomDihedral",
    "RewardShaping",
    "box_answer",
    "downsample",
    "encode_question",
    "generalized_iou",
    "mask_box",
    "unit_action",
]
