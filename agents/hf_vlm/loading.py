"""Checks and loading for any supported VLM family, with one-line errors naming the path.

Checks run before anything loads: a local model directory needs a ``config.json`` whose
``model_type`` is a known family, weights, and (unless another processor is given) a
tokenizer and an image processor. Hub ids are checked when loaded. Also here: hub-id
detection, LoRA adapter bases, dtype resolution and the Qwen-style processor pin to the
protocol frame.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from t2s_env import CheckpointError

from .families import BY_MODEL_TYPE, FAMILIES, Family, known_families

#: files of which at least one must exist for the tokenizer / the image processor
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
#: files of which one must exist for the weights
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

__all__ = ["PROCESSOR_FILES", "TOKENIZER_FILES", "WEIGHT_FILES", "adapter_base", "check_model_dir",
           "check_model_dir_processor_only", "family_of_dir", "family_of_model", "is_local", "load_model",
           "load_processor", "pin_image_size", "prepare_processor", "processed_size", "resolve_dtype"]


def is_local(path: str) -> bool:
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
    if not is_local(path):
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
    return (OSError, ValueError) if is_local(path) else (Exception,)


def _hub_hint(path: str) -> str:
    if is_local(path):
        return ""
    return f" ({path!r} is no local directory, so it was looked up as a hub id; offline, set HF_HUB_OFFLINE=1 and use a downloaded copy)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _model_type(path: str) -> str | None:
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"model path {path} does not exist; pass a checkpoint directory or a hub id such as "
                              f"{FAMILIES['qwen3_vl'].example}")
    if not p.is_dir():
        raise CheckpointError(f"model path {path} is a file; pass the checkpoint directory that holds config.json")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{path} has no config.json; it is not a Hugging Face model directory "
                              "(pass the checkpoint folder itself)")
    try:
        return json.loads(cfg.read_text()).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise CheckpointError(f"{cfg} is not valid JSON ({exc})") from None


def family_of_dir(path: str, allowed: Sequence[str] | None = None) -> Family:
    """The family of the local model directory ``path`` (CheckpointError when unknown or
    not among ``allowed``)."""
    model_type = _model_type(path)
    fam = BY_MODEL_TYPE.get(model_type)  # type: ignore[arg-type]
    if allowed is not None and (fam is None or fam.name not in allowed):
        labels = " or ".join(FAMILIES[a].label for a in allowed)
        raise CheckpointError(f"{path} holds a {model_type!r} model, not {labels}; "
                              f"hf-vlm:{path} takes any of: {known_families()}")
    if fam is None:
        labels = ", ".join(f.label for f in FAMILIES.values())
        raise CheckpointError(f"{path} holds a {model_type!r} model, not {labels}; "
                              f"supported model_type values: {known_families()}")
    return fam


def check_model_dir(path: str, need_processor: bool = True, allowed: Sequence[str] | None = None) -> Family | None:
    """Raise CheckpointError unless the local directory ``path`` holds a known family's
    config, weights and (when ``need_processor``) a tokenizer and an image processor.
    Returns the family (None for a hub id, checked when loaded)."""
    if not is_local(path):
        return None
    fam = family_of_dir(path, allowed)
    p = Path(path).expanduser()
    if not any((p / f).is_file() for f in WEIGHT_FILES) and not any(p.glob("model-*.safetensors")):
        raise CheckpointError(f"{path} has no weights (model.safetensors or pytorch_model.bin); "
                              "pass the directory save_pretrained wrote, or a LoRA adapter directory")
    if need_processor:
        missing = []
        if not any((p / f).is_file() for f in TOKENIZER_FILES):
            missing.append("a tokenizer (tokenizer.json)")
        if not any((p / f).is_file() for f in PROCESSOR_FILES):
            missing.append("an image processor (preprocessor_config.json)")
        if missing:
            raise CheckpointError(
                f"{path} lacks {' and '.join(missing)}; copy them from the base model (e.g. "
                f"AutoProcessor.from_pretrained('{fam.example}').save_pretrained(DIR)) or pass processor=<dir or hub id>"
            )
    return fam


def load_processor(path: str, family: Family, image_size: int | None, **kwargs: Any) -> Any:
    """The processor of ``path``, left-padding; a Qwen-style one is pinned so that an
    ``image_size`` square is fed as it is (when the family needs it) or at least allowed."""
    from transformers import AutoProcessor, ProcessorMixin

    check_model_dir_processor_only(path)
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except _load_errors(path) as exc:
        raise CheckpointError(f"cannot load a processor from {path}: {_first_line(exc)}{_hub_hint(path)}") from None
    if not isinstance(processor, ProcessorMixin) or getattr(processor, "image_processor", None) is None:
        raise CheckpointError(f"{path} has a tokenizer but no image processor (preprocessor_config.json); "
                              f"copy it from {family.example} or pass processor=<dir or hub id>")
    prepare_processor(processor, family, image_size)
    return processor


def prepare_processor(processor: Any, family: Family, image_size: int | None) -> Any:
    tok = processor.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if family.qwen_processor and image_size:
        pin_image_size(processor, image_size)
    return processor


def load_model(path: str, dtype: Any = None, attn_implementation: str | None = None,
               allowed: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """The model of a directory or hub id (checked first) through
    ``AutoModelForImageTextToText``. A PEFT adapter directory loads on its base, merged."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    base = adapter_base(path) if is_local(path) else None
    if base is not None:
        model = load_model(base, dtype=dtype, attn_implementation=attn_implementation, allowed=allowed, **kwargs)
        from peft import PeftModel

        try:
            return PeftModel.from_pretrained(model, path).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"cannot load the LoRA adapter {path} on {base}: {_first_line(exc)}") from None
    check_model_dir(path, need_processor=False, allowed=allowed)
    try:
        config = AutoConfig.from_pretrained(path)
    except _load_errors(path) as exc:
        raise CheckpointError(f"cannot read the model config of {path}: {_first_line(exc)}{_hub_hint(path)}") from None
    model_type = getattr(config, "model_type", None)
    if model_type not in BY_MODEL_TYPE or (allowed is not None and BY_MODEL_TYPE[model_type].name not in allowed):
        raise CheckpointError(f"{path} holds a {model_type!r} model; supported: {known_families()}")
    opts: dict[str, Any] = dict(kwargs)
    if dtype is not None:
        opts["dtype"] = dtype
    if attn_implementation:
        opts["attn_implementation"] = attn_implementation
    try:
        return AutoModelForImageTextToText.from_pretrained(path, **opts)
    except _load_errors(path) as exc:
        raise CheckpointError(f"cannot load model weights from {path}: {_first_line(exc)}{_hub_hint(path)}") from None


def family_of_model(model: Any) -> Family:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    fam = BY_MODEL_TYPE.get(model_type)  # type: ignore[arg-type]
    if fam is None:
        raise CheckpointError(f"a loaded {type(model).__name__} (model_type {model_type!r}) is no supported family; "
                              f"supported: {known_families()}")
    return fam
