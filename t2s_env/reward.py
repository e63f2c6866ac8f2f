"""The per-completion reward (SPEC §4) and its components.

``R = w_iou·IoU + w_json·1[strict parse] + w_think·1[think/answer format]`` with weights
(2, 1, 1) by default, so R ∈ [0, 4]. On an empty ground truth the IoU term is 1 iff the
answer is exactly ``[]``. The components are returned separately so that trainers can log
each (trl logs one reward function per component).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

from .errors import ConfigError

COMPONENTS = ("iou", "json", "think")


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward components; upstream's are iou=2, json=1, think=1."""

    iou: float = 2.0
    json: float = 1.0
    think: float = 1.0

    def __post_init__(self) -> None:
        # A NaN or infinite weight would make every reward NaN or unbounded (and trl would
        # train on it silently): refuse it, and anything that is not a number.
        for name in COMPONENTS:
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                number = None
            if isinstance(value, bool) or number is None or not math.isfinite(number):
                raise ConfigError(
                    f"reward weight {name}={value!r} must be a finite number (default iou=2, json=1, think=1)"
                )
            object.__setattr__(self, name, number)

    @classmethod
    def from_any(cls, value: "RewardWeights | Mapping[str, float] | None") -> "RewardWeights":
        if value is None:
            return cls()
        if isinstance(value, RewardWeights):
            return value
        unknown = set(value) - set(COMPONENTS)
        if unknown:
            raise ConfigError(
                f"unknown reward component(s) {sorted(unknown)}; valid: {', '.join(COMPONENTS)}"
            )
        return cls(**dict(value.items()))

    def as_list(self) -> list[float]:
        """In COMPONENTS order, e.g. for trl's ``reward_weights``."""
        return [self.iou, self.json, self.think]

    @property
    def maximum(self) -> float:
        return sum(max(w, 0.0) for w in self.as_list())

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def iou_term(
    answer_ok: bool, answer_empty: bool, intersection: int, union: int, gt_empty: bool
) -> float:
    """The mask term of the reward.

    Empty GT: 1 iff the answer parsed and is ``[]`` (upstream's rule). Otherwise the hard
    IoU of the OR-ed instance masks with the GT, 0 for a failed parse or ``[]``.
    """
    if gt_empty:
        return 1.0 if (answer_ok and answer_empty) else 0.0
    if not answer_ok or answer_empty or union <= 0:
        return 0.0
    return intersection / union


def reward_components(
    answer_ok: bool,
    answer_empty: bool,
    intersection: int,
    union: int,
    gt_empty: bool,
    json_ok: bool,
    think_ok: bool,
) -> dict[str, float]:
    return {
        "iou": iou_term(answer_ok, answer_empty, intersection, union, gt_empty),
        "json": 1.0 if json_ok else 0.0,
        "think": 1.0 if think_ok else 0.0,
    }


def total_reward(components: Mapping[str, float], weights: RewardWeights) -> float:
    """Weighted sum, clipped to [0, sum of positive weights] as upstream clips."""
    r = weights.iou * components["iou"] + weights.json * components["json"] + weights.think * components["think"]
    return float(min(max(r, 0.0), weights.maximum))
