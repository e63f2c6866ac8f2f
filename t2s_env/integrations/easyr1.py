"""EasyR1 reward functions for Think2Seg rows written by ``t2s data export easyr1``.

    worker.reward.reward_type=batch
    worker.reward.reward_function=$(python -c "import t2s_env.integrations.easyr1 as m; print(m.__file__)"):compute_score

EasyR1 calls the batch function with ``[{"response", "response_length", "ground_truth"}, ...]``
(``ground_truth`` = the row's ``answer`` column, a Think2Seg reference) and the
``reward_function_kwargs`` (scorer options, see :mod:`t2s_env.integrations.backend`).
Each score is ``{"overall", "format", "accuracy"}`` plus the raw components:

- ``overall``: the SPEC §4 reward R in [0, 4] (``2·IoU + json + think`` by default), the
  value EasyR1 trains on;
- ``accuracy``: the IoU term in [0, 1];
- ``format``: the mean of the JSON and think points, in [0, 1].

``compute_score_sequential`` is the one-input form for ``reward_type=sequential``.
EasyR1 loads this file by path, so it uses absolute imports only.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from t2s_env.integrations.backend import score_references


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
        raise TypeError("EasyR1's batch reward function takes a list of reward inputs; use compute_score_sequential for one")
    solutions = [inp["response"] for inp in reward_inputs]
    truths = [inp["ground_truth"] for inp in reward_inputs]
    return [_as_dict(r) for r in score_references(solutions, truths, kwargs)]


def compute_score_sequential(reward_input: Mapping[str, Any], **kwargs: Any) -> dict[str, float]:
    """EasyR1's sequential reward function (one input)."""
    return compute_score([reward_input], **kwargs)[0]
