"""trl reward functions: the environment's reward as trl's ``GRPOTrainer`` calls it.

Two ways in:

- :func:`make_reward_functions` builds the three reward callables (``iou``, ``json``,
  ``think``) over a :class:`~t2s_env.scoring.Scorer` (or a
  :class:`~t2s_env.remote.RemoteScorer`) that a training script made (``t2s train grpo``).
- :func:`t2s_iou`, :func:`t2s_json` and :func:`t2s_think` are module-level functions that
  trl's own scripts name by dotted path (``trl/scripts/grpo.py`` imports the module before
  the last dot and takes the attribute)::

      trl grpo ... --reward_funcs t2s_env.integrations.trl.t2s_iou \
          t2s_env.integrations.trl.t2s_json t2s_env.integrations.trl.t2s_think \
          --reward_weights 2 1 1

  With weights 2, 1, 1 their sum is SPEC §4's reward. trl calls each as
  ``f(prompts=, completions=, completion_ids=, **columns)`` with every dataset column.

The scorer of the module-level functions is configured as the verl and EasyR1 adapters'
(:mod:`t2s_env.integrations.backend`, built once per process and set of options): by
:func:`configure` (``configure(segmenter="sam2:small", coord_frame="rel1000")``), else by
the JSON object in ``T2S_REWARD_OPTIONS``, else by the backend's defaults (``T2S_SCORER_URL``
scores through ``t2s serve``; otherwise a local ``T2S_SEGMENTER``, default ``sam2:small``).

Columns :func:`t2s_iou` reads (the format rewards read only the completions), one of:

- ``ground_truth``: a Think2Seg reference (:mod:`t2s_env.integrations.refs`), as ``t2s data
  export`` writes it; verl's ``reward_model`` column (``{"style": "rule", "ground_truth":
  ...}``) is read too. The completions are scored on the pixels the reference resolves to.
- ``image`` (PIL or array in the protocol frame; trl's ``images`` lists too) and ``gt_mask``
  ((H, W) bool per row), optionally ``image_id`` and ``sample_id`` to group rows that share
  an image (:func:`make_reward_functions`).

This module sits beside the verl and EasyR1 adapters and uses absolute imports only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any, Callable, Sequence

import numpy as np

from t2s_env.errors import ConfigError
from t2s_env.integrations.backend import backend, check_options, score_references
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


# -- module-level reward functions, for trl's scripts (--reward_funcs by dotted path) ------

#: the options :func:`configure` set (None: read them from T2S_REWARD_OPTIONS)
_CONFIGURED: dict[str, Any] | None = None
_FUNCS: dict[str, list[Callable[..., list[float]]]] = {}
_LOCK = threading.Lock()
OPTIONS_VARIABLE = "T2S_REWARD_OPTIONS"
#: keywords GRPOTrainer adds to the dataset's columns (trl 1.16 _calculate_rewards)
TRAINER_KEYWORDS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def configure(**options: Any) -> None:
    """Set the scorer options of :func:`t2s_iou`, :func:`t2s_json` and :func:`t2s_think`
    for this process (those of :mod:`t2s_env.integrations.backend`: ``remote``,
    ``segmenter``, ``device``, ``coord_frame`` ...). Replaces earlier ones and
    ``T2S_REWARD_OPTIONS``; an unknown option is a one-line ConfigError."""
    global _CONFIGURED
    _CONFIGURED = check_options(options)


def reward_options() -> dict[str, Any]:
    """The options in force: those of :func:`configure`, else the JSON object in
    ``T2S_REWARD_OPTIONS``, else none (the backend's defaults: ``T2S_SCORER_URL``,
    ``T2S_SEGMENTER``)."""
    if _CONFIGURED is not None:
        return dict(_CONFIGURED)
    text = os.environ.get(OPTIONS_VARIABLE, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{OPTIONS_VARIABLE}={text[:80]!r} is not JSON ({exc}); give an object such as "
                          '\'{"segmenter": "sam2:small", "coord_frame": "rel1000"}\'') from None
    if not isinstance(options, dict):
        raise ConfigError(f"{OPTIONS_VARIABLE} must hold a JSON object of scorer options, got {type(options).__name__}")
    return check_options(options)


def _reward_functions(options: dict[str, Any]) -> list[Callable[..., list[float]]]:
    """The :func:`make_reward_functions` callables over the backend scorer of ``options``."""
    key = json.dumps(options, sort_keys=True, default=str)
    with _LOCK:
        if key not in _FUNCS:
            _FUNCS[key] = make_reward_functions(backend(options)[0])
        return _FUNCS[key]


def _references(columns: dict[str, Any]) -> list[Any] | None:
    """The rows' ground-truth references: a ``ground_truth`` column, or verl's
    ``reward_model`` column (``{"style": "rule", "ground_truth": ...}``); None without."""
    if columns.get("ground_truth") is not None:
        return list(columns["ground_truth"])
    rows = columns.get("reward_model")
    if rows is None:
        return None
    refs = []
    for row in rows:
        if not isinstance(row, dict) or "ground_truth" not in row:
            raise ConfigError("the reward_model column must hold {'ground_truth': <reference>} per row, "
                              "as `t2s data export verl` writes it")
        refs.append(row["ground_truth"])
    return refs


def t2s_iou(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
    """The IoU term of each completion (in [0, 1]; SPEC §4's empty-GT rule), scored against
    the row's ``ground_truth`` reference, or its ``image`` and ``gt_mask`` columns."""
    options = reward_options()
    refs = _references(columns)
    if refs is not None:
        return [float(r.reward_components["iou"]) for r in score_references(list(completions), refs, options)]
    if (columns.get("image") is None and columns.get("images") is None) or "gt_mask" not in columns:
        names = sorted(k for k in columns if k not in TRAINER_KEYWORDS)
        raise ConfigError(
            "t2s_iou needs a 'ground_truth' column (a reference, as `t2s data export` writes) or "
            f"'image' and 'gt_mask' columns; the rows have {', '.join(names) or 'no columns'}"
        )
    return _reward_functions(options)[0](prompts, completions, **columns)


def t2s_json(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
    """1 for each completion whose answer parses in strict mode, else 0."""
    return _reward_functions(reward_options())[1](prompts, completions, **columns)


def t2s_think(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
    """1 for each completion in the ``<think>…</think><answer>…</answer>`` format, else 0."""
    return _reward_functions(reward_options())[2](prompts, completions, **columns)


__all__ = ["configure", "make_reward_functions", "reward_options", "t2s_iou", "t2s_json", "t2s_think"]
