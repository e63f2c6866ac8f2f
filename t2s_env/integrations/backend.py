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
- ``timeout``, ``retries``: the remote client's.

References are resolved here, in the trainer's process, and groups of completions about
one image are scored in one ``score_many`` call (each image encoded once; a local
segmenter also keeps an LRU of embeddings across calls).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Mapping, Sequence

from t2s_env.errors import ConfigError
from t2s_env.integrations.cache import EncodeCache
from t2s_env.integrations.refs import GroundTruthRef, RefResolver

_BACKENDS: dict[str, tuple[Any, RefResolver]] = {}
_LOCK = threading.Lock()
_OPTIONS = ("remote", "segmenter", "device", "segmenter_options", "prompt_variant", "parser_mode",
            "reward_weights", "timeout", "retries", "token")


def backend(options: Mapping[str, Any]) -> tuple[Any, RefResolver]:
    """(scorer, resolver) for these options, created on first use in this process."""
    opts = {k: v for k, v in options.items() if k in _OPTIONS}
    key = json.dumps(opts, sort_keys=True, default=str)
    with _LOCK:
        if key in _BACKENDS:
            return _BACKENDS[key]
        remote = opts.get("remote") or os.environ.get("T2S_SCORER_URL")
        if remote:
            from t2s_env.remote import RemoteScorer

            scorer: Any = RemoteScorer(remote, token=opts.get("token"), timeout=float(opts.get("timeout", 120.0)),
                                       retries=int(opts.get("retries", 5)))
        else:
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
            scorer = Scorer(EncodeCache(segmenter), prompt_variant=opts.get("prompt_variant", "bbox+2pos"),
                            parser_mode=opts.get("parser_mode", "strict"), reward_weights=opts.get("reward_weights"))
        _BACKENDS[key] = (scorer, RefResolver())
        return _BACKENDS[key]


def score_references(solutions: Sequence[str], ground_truths: Sequence[Any], options: Mapping[str, Any]):
    """ScoreResults for ``solutions[i]`` against reference ``ground_truths[i]``: grouped by
    reference (one mask) and by image (one encoding)."""
    if len(solutions) != len(ground_truths):
        raise ValueError(f"{len(solutions)} solutions for {len(ground_truths)} ground truths")
    scorer, resolver = backend(options)
    order: dict[str, list[int]] = {}
    refs: dict[str, GroundTruthRef] = {}
    for i, gt in enumerate(ground_truths):
        ref = GroundTruthRef.from_any(gt)
        k = ref.to_json()
        refs.setdefault(k, ref)
        order.setdefault(k, []).append(i)
    groups, keys = [], []
    for k, idx in order.items():
        image, mask, image_key = resolver.resolve(refs[k])
        groups.append((image, mask, [solutions[i] for i in idx]))
        keys.append(image_key)
    scored = scorer.score_many(groups, image_keys=keys)
    flat: list[Any] = [None] * len(solutions)
    for idx, results in zip(order.values(), scored):
        for i, r in zip(idx, results):
            flat[i] = r
    return flat
