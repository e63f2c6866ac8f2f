"""verl reward functions for Think2Seg rows written by ``t2s data export verl``.

Per sample (verl's ``naive`` reward manager)::

    custom_reward_function.path=$(python -c "import t2s_env.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score

Batched, grouping by image so each image is encoded once (``reward_model.reward_manager=batch``)::

    custom_reward_function.name=compute_score_batch

Options (``custom_reward_function.reward_kwargs``) are listed in
:mod:`t2s_env.integrations.backend`: e.g. ``+custom_reward_function.reward_kwargs.remote=http://127.0.0.1:8765``
scores through ``t2s serve``; ``...segmenter=sam2:small`` locally.

Each call returns ``{"score": R, "iou": ..., "json": ..., "think": ..., "parsed": ...}``:
``score`` is the SPEC §4 reward (``2·IoU + json + think`` with the default weights), the
other keys are its components, which verl logs as ``reward_extra_info``. A reference that
names a missing file raises an error naming it; a scoring service that fails raises after
bounded retries. Neither becomes a silent reward of 0.

verl loads this file by path, so it uses absolute imports only.
"""

from __future__ import annotations

from typing import Any, Sequence

from t2s_env.integrations.backend import score_references

DATA_SOURCE = "think2seg"


def _as_dict(result: Any) -> dict[str, float]:
    comps = result.reward_components
    return {
        "score": float(result.reward),
        "iou": float(comps["iou"]),
        "json": float(comps["json"]),
        "think": float(comps["think"]),
        "parsed": float(result.parsed_ok),
    }


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any) -> dict[str, float]:
    """One completion (verl's per-sample signature). ``ground_truth`` is the row's
    ``reward_model.ground_truth`` reference; ``kwargs`` are the scorer options."""
    return _as_dict(score_references([solution_str], [ground_truth], kwargs)[0])


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """Every completion of a batch (verl's ``batch`` reward manager): completions are grouped
    by reference and image, so a GRPO group of G costs one encoding and one batched decode."""
    return [_as_dict(r) for r in score_references(list(solution_strs), list(ground_truths), kwargs)]
