"""What an agent sees: the observation and reset info of a sample in the view frame.

The view frame itself (840×840 square, LANCZOS image, NEAREST mask) is built by
:mod:`t2s_env.framing`; this module only assembles the observation from it.
"""

from __future__ import annotations

from typing import Any

from .framing import FramedSample
from .instructions import DEFAULT_VARIANT, PromptVariant, build_messages


def make_observation(
    framed: FramedSample,
    variant: str | PromptVariant = DEFAULT_VARIANT,
    privileged: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The env's observation and reset info for a framed sample.

    observation: ``{"image": (S, S, 3) uint8, "question": str}``.
    info: ``{"sample_id", "messages"}`` (+ ``"gt_mask"`` (S, S) bool when privileged).
    """
    obs = {"image": framed.image, "question": framed.sample.question}
    info: dict[str, Any] = {
        "sample_id": framed.sample.sample_id,
        "messages": build_messages(framed.sample.question, variant),
    }
    if privileged:
        info["gt_mask"] = framed.gt_mask
    return obs, info
