"""Checkpoint helpers shared by every VLM family: hub-id detection, LoRA adapter bases,
dtype resolution, the Qwen-style processor pin to the protocol frame, and one-line load
errors (:class:`t2s_env.CheckpointError`). The per-family checks and loaders that use
them are in :mod:`think2seg.agents.hf_vlm.loading`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from t2s_env import CheckpointError

#: files of which at least one must exist for the tokenizer / the image processor
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

#: Qwen's patch size × spatial merge size: images whose sides are multiples of this are
#: not resized by the processor (when min/max pixels allow their area).
PATCH_FACTOR = 28


def _is_local(path: str) -> bool:
    """A local path (checked here) rather than a hub id ``owner/name`` (checked on load)."""
    return os.path.exists(os.path.expanduser(path)) or path.startswith((".", "/", "~")) or not _HUB_ID.match(path)


def adapter_base(path: str) -> str | None:
    """The base model of a PEFT adapter directory, or None when ``path`` is no adapter."""
    cfg = Path(path) / "adapter_config.json"
    if not cfg.is_file():
        return None
    try:
        base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    except ValueError as exc:
        raise CheckpointError(f"{cfg} is not valid JSON ({exc}); re-save the adapter") from None
    if not base:
        raise CheckpointError(f"{cfg} names no base_model_name_or_path; pass the base model with processor=... and model=...")
    return str(base)


def pin_image_size(processor: Any, side: int) -> None:
    """Widen the image processor's pixel bounds so that a ``side``×``side`` image (a
    multiple of 28) is not resized: SPEC §5's 840 frame gives 60×60 patches → 900 tokens."""
    ip = processor.image_processor
    area = side * side
    size = ip.size
    lo = size.get("shortest_edge") or getattr(ip, "min_pixels", None) or area
    hi = size.get("longest_edge") or getattr(ip, "max_pixels", None) or area
    new = {"shortest_edge": int(min(lo, area)), "longest_edge": int(max(hi, area))}
    if isinstance(size, dict):
        ip.size = new
    else:  # transformers' SizeDict
        ip.size = type(size)(**new)
    for attr, value in (("min_pixels", new["shortest_edge"]), ("max_pixels", new["longest_edge"])):
        if getattr(ip, attr, None) is not None:
            setattr(ip, attr, value)


def processed_size(processor: Any, height: int, width: int) -> tuple[int, int]:
    """(height, width) the processor feeds the vision tower for an image of this size."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    ip = processor.image_processor
    lo, hi = ip.size.get("shortest_edge"), ip.size.get("longest_edge")
    factor = getattr(ip, "patch_size", 14) * getattr(ip, "merge_size", 2)
    return smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)


def check_model_dir_processor_only(path: str) -> None:
    """A processor directory needs tokenizer + image processor files (config optional)."""
    if not _is_local(path):
        return
    p = Path(path).expanduser()
    if not p.is_dir():
        raise CheckpointError(f"processor path {path} is not a directory")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(f"{path} has no tokenizer (tokenizer.json); pass processor=<the base model's dir or hub id>")
    if not any((p / f).is_file() for f in PROCESSOR_FILES):
        raise CheckpointError(
            f"{path} has no image processor (preprocessor_config.json); pass processor=<the base model's dir or hub id>"
        )


def resolve_dtype(dtype: Any, device: str) -> Any:
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
                "float32": torch.float32, "fp32": torch.float32}[str(dtype)]
    except KeyError:
        from t2s_env import ConfigError

        raise ConfigError(f"dtype must be auto, bfloat16, float16 or float32, got {dtype!r}") from None


def _load_errors(path: str) -> tuple[type[BaseException], ...]:
    """Local files fail with OSError/ValueError; a hub download may fail with the HTTP
    client's own errors too, which are just as much the user's to fix."""
    return (OSError, ValueError) if _is_local(path) else (Exception,)


def _hub_hint(path: str) -> str:
    if _is_local(path):
        return ""
    return f" ({path!r} is no local directory, so it was looked up as a hub id; offline, set HF_HUB_OFFLINE=1 and use a downloaded copy)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
