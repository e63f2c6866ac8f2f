"""Loading a Qwen2.5-VL checkpoint (local directory or hub id) with clear errors.

A Think2Seg-RS release is a plain Qwen2.5-VL checkpoint; so is a full fine-tune saved by
``t2s train grpo``. A LoRA run saves adapter directories (``adapter_config.json``): those
load on top of their base model. Every problem a user can cause (a path without a
processor, a model of another architecture) raises :class:`t2s_env.CheckpointError` with one
line that says what is wrong and how to fix it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from t2s_env import CheckpointError

QWEN_MODEL_TYPE = "qwen2_5_vl"
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


def check_model_dir(path: str, need_processor: bool = True) -> None:
    """Raise CheckpointError unless ``path`` (a local directory) holds a Qwen2.5-VL config
    and, when ``need_processor``, a tokenizer and an image processor. Hub ids are checked
    when loaded."""
    if not _is_local(path):
        return
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"model path {path} does not exist; pass a checkpoint directory or a hub id such as RicardoString/Think2Seg-RS-3B")
    if not p.is_dir():
        raise CheckpointError(f"model path {path} is a file; pass the checkpoint directory that holds config.json")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{path} has no config.json; it is not a Hugging Face model directory (pass the checkpoint folder itself)")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except ValueError as exc:
        raise CheckpointError(f"{cfg} is not valid JSON ({exc})") from None
    if model_type != QWEN_MODEL_TYPE:
        raise CheckpointError(
            f"{path} holds a {model_type!r} model, not Qwen2.5-VL (model_type {QWEN_MODEL_TYPE!r}); "
            "the qwen agent and GRPO recipes need a Qwen2.5-VL checkpoint such as Qwen/Qwen2.5-VL-3B-Instruct"
        )
    if need_processor:
        missing = []
        if not any((p / f).is_file() for f in TOKENIZER_FILES):
            missing.append("a tokenizer (tokenizer.json)")
        if not any((p / f).is_file() for f in PROCESSOR_FILES):
            missing.append("an image processor (preprocessor_config.json)")
        if missing:
            raise CheckpointError(
                f"{path} lacks {' and '.join(missing)}; copy them from the base model "
                "(e.g. AutoProcessor.from_pretrained('Qwen/Qwen2.5-VL-3B-Instruct').save_pretrained(DIR)) "
                "or pass processor=<dir or hub id>"
            )


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


def load_processor(path: str, image_size: int | None = 840, **kwargs: Any) -> Any:
    """The checkpoint's processor, left-padding, pinned to ``image_size`` squares."""
    from transformers import AutoProcessor, ProcessorMixin

    check_model_dir_processor_only(path)
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except _load_errors(path) as exc:
        raise CheckpointError(f"cannot load a processor from {path}: {_first_line(exc)}{_hub_hint(path)}") from None
    if not isinstance(processor, ProcessorMixin) or getattr(processor, "image_processor", None) is None:
        raise CheckpointError(
            f"{path} has a tokenizer but no image processor (preprocessor_config.json); "
            "copy it from the base Qwen2.5-VL model or pass processor=<dir or hub id>"
        )
    processor.tokenizer.padding_side = "left"
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    if image_size is not None:
        pin_image_size(processor, image_size)
    return processor


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


def load_model(path: str, dtype: Any = None, attn_implementation: str | None = None, **kwargs: Any) -> Any:
    """A ``Qwen2_5_VLForConditionalGeneration`` from a directory or hub id (checked first).

    A PEFT adapter directory is loaded on its base model and merged."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    base = adapter_base(path) if _is_local(path) else None
    if base is not None:
        model = load_model(base, dtype=dtype, attn_implementation=attn_implementation, **kwargs)
        from peft import PeftModel

        return PeftModel.from_pretrained(model, path).merge_and_unload()
    check_model_dir(path, need_processor=False)
    try:
        config = AutoConfig.from_pretrained(path)
    except _load_errors(path) as exc:
        raise CheckpointError(f"cannot read the model config of {path}: {_first_line(exc)}{_hub_hint(path)}") from None
    if getattr(config, "model_type", None) != QWEN_MODEL_TYPE:
        raise CheckpointError(
            f"{path} holds a {getattr(config, 'model_type', None)!r} model, not Qwen2.5-VL "
            f"(model_type {QWEN_MODEL_TYPE!r})"
        )
    opts: dict[str, Any] = dict(kwargs)
    if dtype is not None:
        opts["dtype"] = dtype
    if attn_implementation:
        opts["attn_implementation"] = attn_implementation
    try:
        return AutoModelForImageTextToText.from_pretrained(path, **opts)
    except _load_errors(path) as exc:
        raise CheckpointError(f"cannot load model weights from {path}: {_first_line(exc)}{_hub_hint(path)}") from None


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
