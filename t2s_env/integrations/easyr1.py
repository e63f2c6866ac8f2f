"""EasyR1 reward functions for Think2Seg rows written by ``t2s data export easyr1``.

    worker:
      reward:
        reward_function: <this file>:compute_score   # python -c "import t2s_env.integrations.easyr1 as m; print(m.__file__)"
        reward_function_kwargs: {remote: "http://127.0.0.1:8765"}   # scorer options

EasyR1 (hiyouga/EasyR1, installed from source; not on PyPI) loads this file by path and
calls the function as its reward managers do:

- **since PR #558 (merged 2025-11-13)**: ``AutoRewardManager`` takes the call form from this
  module's ``REWARD_TYPE`` (``"batch"`` here; EasyR1's default too) and
  ``worker.reward.reward_type`` no longer exists (setting it is a ConfigKeyError). Every
  function of this file is then called with a list of inputs: use :func:`compute_score`.
- **from PR #271 to #558** (e.g. commit 46c6c210fddc): ``worker.reward.reward_type=batch``
  calls :func:`compute_score`; ``reward_type=sequential`` calls
  :func:`compute_score_sequential` once per input.

Inputs are ``{"response", "response_length", "ground_truth", ...}`` (``ground_truth`` = the
row's ``answer`` column, a Think2Seg reference); the ``reward_function_kwargs`` (scorer
options, passed unchanged to :func:`t2s_env.integrations.backend.score_references`, which
lists them) come as keyword arguments. Each score is ``{"overall", "format", "accuracy"}``
plus the raw components:

- ``overall``: the SPEC §4 reward R in [0, 4] (``2·IoU + json + think`` by default), the
  value EasyR1 trains on;
- ``accuracy``: the IoU term in [0, 1];
- ``format``: the mean of the JSON and think points, in [0, 1].

The batch form groups inputs by reference and image, so a GRPO group costs one encoding.
EasyR1 loads this file by path, so it uses absolute imports only.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from t2s_env.errors import ConfigError
from t2s_env.integrations.backend import score_references

# Read by EasyR1's AutoRewardManager (PR #558 on): the call form of every function here.
REWARD_NAME = "think2seg"
REWARD_TYPE = "batch"


def _as_dict(result: Any) -> dict[str, float]:
    comps = result.reward_components
    return {
        "overall": float(result.reward),
        "format": (float(comps["json"]) + float(comps["think"])) / 2.0,
        "accuracy": float(comps["iou"]),
        "iou": float(comps["iou"]),
        "json": float(comps["json"]),
        "think": float(comps["think"]),
    }


def compute_score(reward_inputs: Sequence[Mapping[str, Any]], **kwargs: Any) -> list[dict[str, float]]:
    """EasyR1's batch reward function: one score dict per input, in order."""
    if not isinstance(reward_inputs, (list, tuple)):
        raise ConfigError(
            f"compute_score takes EasyR1's list of reward inputs, got {type(reward_inputs).__name__}: "
            "EasyR1 before PR #558 calls it so with worker.reward.reward_type=batch "
            "(reward_type=sequential wants compute_score_sequential)"
        )
    solutions = [inp["response"] for inp in reward_inputs]
    truths = [inp["ground_truth"] for inp in reward_inputs]
    return [_as_dict(r) for r in score_references(solutions, truths, kwargs)]


def compute_score_sequential(reward_input: Mapping[str, Any], **kwargs: Any) -> dict[str, float]:
    """EasyR1's sequential reward function (one input; ``reward_type=sequential`` of EasyR1
    before PR #558)."""
    if not isinstance(reward_input, Mapping):
        raise ConfigError(
            f"compute_score_sequential takes one reward input, got {type(reward_input).__name__}: EasyR1 "
            f"since PR #558 calls every function of this file with a list (REWARD_TYPE = {REWARD_TYPE!r}); "
            "set worker.reward.reward_function=<this file>:compute_score"
        )
    return compute_score([reward_input], **kwargs)[0]
