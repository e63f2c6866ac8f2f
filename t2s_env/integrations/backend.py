"""The scorer behind the verl and EasyR1 reward functions: built once per process.

Reward functions are plain functions called with keyword options from the trainer's
config (verl: ``custom_reward_function.reward_kwargs``; EasyR1:
``worker.reward.reward_function_kwargs``). The options:

- ``remote``: URL of a ``t2s serve`` server (default: the ``T2S_SCORER_URL`` environment
  variable; unset = score in this process);
- ``segmenter`` (default ``T2S_SEGMENTER`` or ``sam2:small``), ``device``,
  ``segmenter_options`` (dict): the local segmenter;
- ``prompt_variant``, ``parser_mode``, ``reward_weights``: the local scorer's settings (a
  remote scorer uses the server's);
- ``coord_frame``: the units the policy writes coordinates in (``abs`` pixels, default;
  ``rel1000``; ``rel1``): the local scorer parses in it, and a remote server that scores
  another frame is refused in one line;
- ``timeout``, ``retries``, ``token``: the remote client's.

An unknown option is refused in one line (a misspelt ``coord_frame`` must not score every
answer in the wrong frame). References are resolved here, in the trainer's process, and
groups of completions about one image are scored in one ``score_many`` call (each image
encoded once; a local segmenter also keeps an LRU of embeddings across calls).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Mapping, Sequence

from t2s_env.errors import ConfigError, did_you_mean
from t2s_env.integrations.cache import EncodeCache
from t2s_env.integrations.refs import GroundTruthRef, RefResolver

_BACKENDS: dict[str, tuple[Any, RefResolver]] = {}
_LOCK = threading.Lock()
OPTIONS = ("remote", "segmenter", "device", "segmenter_options", "prompt_variant", "parser_mode",
           "reward_weights", "coord_frame", "timeout", "retries", "token")
#: keywords a trainer adds to the call itself, not options of ours: verl's reward loop
#: passes these when a reward model is configured
TRAINER_KEYWORDS = ("reward_router_address", "reward_model_tokenizer")


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that configure the scorer; an unknown one is a one-line ConfigError."""
    for key in options:
        if key not in OPTIONS and key not in TRAINER_KEYWORDS:
            raise ConfigError(
                f"unknown Think2Seg reward option {key!r}{did_you_mean(key, OPTIONS)}; valid: {', '.join(OPTIONS)}"
            )
    return {k: v for k, v in options.items() if k in OPTIONS}


def _remote_scorer(url: str, opts: Mapping[str, Any]) -> Any:
    from t2s_env.remote import RemoteScorer

    scorer = RemoteScorer(url, token=opts.get("token"), timeout=float(opts.get("timeout", 120.0)),
                          retries=int(opts.get("retries", 5)), coord_frame=opts.get("coord_frame"))
    scorer.server  # noqa: B018 - the frame check happens before the first reward, not inside it
    return scorer


def _local_scorer(opts: Mapping[str, Any]) -> Any:
    from t2s_env.coords import DEFAULT_COORD_FRAME
    from t2s_env.instructions import coord_variant
    from t2s_env.scoring import Scorer
    from t2s_env.segmenters import make_segmenter

    seg_opts = dict(opts.get("segmenter_options") or {})
    if opts.get("device"):
        seg_opts["device"] = opts["device"]
    spec = opts.get("segmenter") or os.environ.get("T2S_SEGMENTER") or "sam2:small"
    try:
        segmenter = make_segmenter(spec, **seg_opts)
    except TypeError as exc:
        raise ConfigError(f"segmenter {spec!r} does not take options {sorted(seg_opts)}: {exc}") from None
    frame = opts.get("coord_frame") or DEFAULT_COORD_FRAME
    # the env's rule: a relative frame asks (and is parsed) in the variant NAME@FRAME
    variant = coord_variant(opts.get("prompt_variant", "bbox+2pos"), frame)
    return Scorer(EncodeCache(segmenter), prompt_variant=variant, parser_mode=opts.get("parser_mode", "strict"),
                  reward_weights=opts.get("reward_weights"), coord_frame=frame)


def backend(options: Mapping[str, Any]) -> tuple[Any, RefResolver]:
    """(scorer, resolver) for these options, created on first use in this process."""
    opts = check_options(options)
    key = json.dumps(opts, sort_keys=True, default=str)
    with _LOCK:
        if key in _BACKENDS:
            return _BACKENDS[key]
        remote = opts.get("remote") or os.environ.get("T2S_SCORER_URL")
        scorer = _remote_scorer(remote, opts) if remote else _local_scorer(opts)
        _BACKENDS[key] = (scorer, RefResolver())
        return _BACKENDS[key]


def score_references(solutions: Sequence[str], ground_truths: Sequence[Any], options: Mapping[str, Any]):
    """ScoreResults for ``solutions[i]`` against reference ``ground_truths[i]``: grouped by
    the pixels each reference resolves to (one mask: one group; one image: one encoding)."""
    if len(solutions) != len(ground_truths):
        raise ValueError(f"{len(solutions)} solutions for {len(ground_truths)} ground truths")
    scorer, resolver = backend(options)
    resolved: dict[str, Any] = {}
    order: dict[tuple[str, str], list[int]] = {}
    pairs: dict[tuple[str, str], Any] = {}
    for i, gt in enumerate(ground_truths):
        ref = GroundTruthRef.from_any(gt)
        k = ref.source_key
        if k not in resolved:
            resolved[k] = resolver.resolve(ref)
        r = resolved[k]
        pairs.setdefault((r.image_key, r.mask_key), r)
        order.setdefault((r.image_key, r.mask_key), []).append(i)
    groups = [(pairs[k].image, pairs[k].mask, [solutions[i] for i in idx]) for k, idx in order.items()]
    scored = scorer.score_many(groups, image_keys=[k[0] for k in order])
    flat: list[Any] = [None] * len(solutions)
    for idx, results in zip(order.values(), scored):
        for i, r in zip(idx, results):
            flat[i] = r
    return flat
