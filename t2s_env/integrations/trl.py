"""trl reward functions: the environment's reward as trl's ``GRPOTrainer`` calls it.

:func:`make_reward_functions` builds the three reward callables (``iou``, ``json``,
``think``) over a :class:`~t2s_env.scoring.Scorer` (or a
:class:`~t2s_env.remote.RemoteScorer`) that a training script made.

This module sits beside the verl and EasyR1 adapters and uses absolute imports only.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np

from t2s_env.reward import COMPONENTS
from t2s_env.scoring import Scorer, ScoreResult, completion_text


def _image_key(image: Any) -> str:
    arr = np.asarray(image)
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()


#: Format flags remembered between trl's reward callables (more than any batch).
_MAX_REMEMBERED_FLAGS = 65_536


def make_reward_functions(
    scorer: Scorer,
    gt_mask_lookup: Callable[[str], np.ndarray] | None = None,
    on_scores: Callable[[list[ScoreResult], dict[str, Any]], None] | None = None,
) -> list[Callable[..., list[float]]]:
    """trl-style reward callables, one per component (``iou``, ``json``, ``think``), so
    that trl logs each; pass ``scorer.weights.as_list()`` as trl's ``reward_weights``.

    Each callable is ``f(prompts, completions, **columns) -> list[float]``. Columns used:
    ``image`` (PIL or array, in the protocol frame), ``image_id`` (identifies the image;
    without it the pixels are hashed), and either ``gt_mask`` (arrays) or ``sample_id``
    resolved through ``gt_mask_lookup``. The ``iou`` callable groups the completions by
    (image, sample), encodes each unique image once, decodes each group batched and
    scores every completion against its own sample's mask;
    ``json`` and ``think`` only parse. ``on_scores(results, columns)`` sees every scored
    batch (for logging IoU and parse failures).
    """

    # trl calls the three callables one after the other on the same completions: the iou
    # callable's scoring records each completion's format flags, and the json and think
    # callables look them up instead of parsing again. One batch is kept.
    flags: dict[str, tuple[bool, bool]] = {}  # completion text -> (json_ok, think_ok)

    def format_flags(completion: Any) -> tuple[bool, bool]:
        text = completion_text(completion)
        if isinstance(text, str) and text in flags:
            return flags[text]
        answer, json_ok = scorer.parse(completion)
        if isinstance(text, str):
            if len(flags) >= _MAX_REMEMBERED_FLAGS:
                flags.clear()
            flags[text] = (json_ok, answer.think_ok)
        return json_ok, answer.think_ok

    def iou(prompts=None, completions=(), **columns: Any) -> list[float]:
        images = columns.get("image") or columns.get("images")
        if images is None:
            raise KeyError("the iou reward needs an 'image' column (the protocol-frame image)")
        images = [im[0] if isinstance(im, (list, tuple)) else im for im in images]
        ids = columns.get("image_id") or [_image_key(im) for im in images]
        if "gt_mask" in columns:
            masks = [np.asarray(m, dtype=bool) for m in columns["gt_mask"]]
        elif gt_mask_lookup is not None and "sample_id" in columns:
            masks = [gt_mask_lookup(s) for s in columns["sample_id"]]
        else:
            raise KeyError("the iou reward needs a 'gt_mask' column, or a 'sample_id' column and gt_mask_lookup")
        # One group per (image, target): completions about the same sample share a mask;
        # samples that share an image (several referring expressions) share its encoding.
        targets = columns.get("sample_id") or [_image_key(m) for m in masks]
        order: dict[Any, list[int]] = {}
        for i, key in enumerate(zip(ids, targets)):
            order.setdefault(key, []).append(i)
        groups = [
            (np.asarray(images[idx[0]].convert("RGB") if hasattr(images[idx[0]], "convert") else images[idx[0]]),
             masks[idx[0]], [completions[i] for i in idx])
            for idx in order.values()
        ]
        scored = scorer.score_many(groups, image_keys=[key[0] for key in order])
        flags.clear()
        for c, res in zip((completions[i] for idx in order.values() for i in idx), (r for rs in scored for r in rs)):
            text = completion_text(c)
            if isinstance(text, str):
                flags[text] = (res.json_ok, res.think_ok)
        flat: list[ScoreResult | None] = [None] * len(completions)
        for idx, res in zip(order.values(), scored):
            for i, r in zip(idx, res):
                flat[i] = r
        if on_scores is not None:
            on_scores(flat, columns)  # type: ignore[arg-type]
        return [r.reward_components["iou"] for r in flat]  # type: ignore[union-attr]

    def json_format(prompts=None, completions=(), **columns: Any) -> list[float]:
        return [1.0 if format_flags(c)[0] else 0.0 for c in completions]

    def think_format(prompts=None, completions=(), **columns: Any) -> list[float]:
        return [1.0 if format_flags(c)[1] else 0.0 for c in completions]

    iou.__name__, json_format.__name__, think_format.__name__ = (f"t2s_{c}" for c in COMPONENTS)
    return [iou, json_format, think_format]


__all__ = ["make_reward_functions"]
