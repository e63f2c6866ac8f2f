"""verl reward functions for Think2Seg rows written by ``t2s data export verl``.

Which function, by verl version (read from the released sources of verl 0.4.1 to 0.9.1):

- **verl 0.7.1 to 0.9.1** (the reward loop): ``reward.reward_manager.name=naive`` (the
  default; ``batch`` is not registered there) and::

      reward.custom_reward_function.path=pkg://t2s_env.integrations.verl
      reward.custom_reward_function.name=compute_score_async

  The reward-loop workers call the function once per completion, many calls at a time.
  :func:`compute_score_async` scores the calls that arrive while a scoring is running as
  one batch, grouped by image, so a GRPO group costs one encoding; :func:`compute_score`
  (synchronous, the same numbers) runs in verl's threads and may encode one image once
  per concurrent call when scoring locally. verl 0.9.x reads only these ``reward.*`` keys;
  0.7.1 and 0.8.0 also move the old top-level ones here.
- **verl 0.6.1 and older, and 0.7.0 with** ``reward_model.use_reward_loop=False``: the top-
  level keys, with the ``batch`` reward manager and :func:`compute_score_batch` (grouped by
  image), or the ``naive`` one and :func:`compute_score`::

      reward_model.reward_manager=batch
      custom_reward_function.path=<printed by: python -c "import t2s_env.integrations.verl as m; print(m.__file__)">
      custom_reward_function.name=compute_score_batch

  (``pkg://`` paths need verl >= 0.7.0.) 0.7.0's default reward loop reads the same keys;
  give it ``reward_model.reward_manager=naive`` and :func:`compute_score`.

Options (``custom_reward_function.reward_kwargs``) are passed unchanged to
:func:`t2s_env.integrations.backend.score_references`, which lists them: e.g.
``remote=http://127.0.0.1:8765`` scores through ``t2s serve``; ``segmenter=sam2:small``
locally. verl's own keyword arguments (``reward_router_address`` and
``reward_model_tokenizer``, given when a reward model is enabled) are not options and are
not passed on.

Each call returns ``{"score": R, "iou": ..., "json": ..., "think": ..., "parsed": ...}``:
``score`` is the SPEC §4 reward (``2·IoU + json + think`` with the default weights), the
other keys are its components, which verl logs as ``reward_extra_info``. A reference that
names a missing file raises an error naming it; a scoring service that fails raises after
bounded retries. Neither becomes a silent reward of 0.

verl may load this file by path, so it uses absolute imports only.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any, Mapping, Sequence

from t2s_env.integrations.backend import score_references

DATA_SOURCE = "think2seg"

# Keyword arguments verl >= 0.7.1's reward loop adds to the call when a reward model is
# enabled (verl/experimental/reward_loop/reward_manager/naive.py); they are not scorer options.
VERL_CALL_KWARGS = ("reward_router_address", "reward_model_tokenizer")


def _as_dict(result: Any) -> dict[str, float]:
    comps = result.reward_components
    return {
        "score": float(result.reward),
        "iou": float(comps["iou"]),
        "json": float(comps["json"]),
        "think": float(comps["think"]),
        "parsed": float(result.parsed_ok),
    }


def _scorer_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer options among a reward call's keyword arguments: all but verl's own."""
    return {k: v for k, v in kwargs.items() if k not in VERL_CALL_KWARGS}


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any) -> dict[str, float]:
    """One completion (verl's per-sample signature). ``ground_truth`` is the row's
    ``reward_model.ground_truth`` reference; ``kwargs`` are the scorer options."""
    return _as_dict(score_references([solution_str], [ground_truth], _scorer_options(kwargs))[0])


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """Every completion of a batch (the ``batch`` reward manager of verl <= 0.7.0): grouped
    by reference and image, so a GRPO group of G costs one encoding and one batched decode."""
    options = _scorer_options(kwargs)
    return [_as_dict(r) for r in score_references(list(solution_strs), list(ground_truths), options)]


class _Coalescer:
    """Scores the calls of one event loop and one set of options: the first call starts a
    scoring (in the loop's executor); calls that arrive meanwhile wait and are scored
    together next, in one ``score_references`` call. Nothing waits for more calls."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.pending: list[tuple[str, Any, asyncio.Future]] = []
        self.draining = False

    async def score(self, solution: str, ground_truth: Any) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((solution, ground_truth, future))
        if not self.draining:
            self.draining = True
            loop.create_task(self._drain(loop))
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                solutions = [s for s, _, _ in batch]
                truths = [g for _, g, _ in batch]
                try:
                    results = await loop.run_in_executor(None, score_references, solutions, truths, self.options)
                except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(_as_dict(result))
        finally:
            self.draining = False


_COALESCERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Coalescer]]" = weakref.WeakKeyDictionary()


async def compute_score_async(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None,
                              **kwargs: Any) -> dict[str, float]:
    """:func:`compute_score` as a coroutine (verl >= 0.7.1 awaits it in its reward loop):
    concurrent calls are scored in batches grouped by image, each image encoded once."""
    options = _scorer_options(kwargs)
    per_loop = _COALESCERS.setdefault(asyncio.get_running_loop(), {})
    key = json.dumps(options, sort_keys=True, default=str)
    coalescer = per_loop.setdefault(key, _Coalescer(options))
    return await coalescer.score(solution_str, ground_truth)
