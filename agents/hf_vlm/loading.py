"""Checks and loading for any supported VLM family, with one-line errors naming the path.

Checks run before anything loads: a local model directory needs a ``config.json`` whose
``model_type`` is a known family, weights, and (unless another processor is given) a
tokenizer and an image processor. Hub ids are checked when loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from t2s_env import CheckpointError

from ..qwen.loading import (
    PROCESSOR_FILES,
    TOKENIZER_FILES,
    _first_line,
    _hub_hint,
    _is_local,
    _load_errors,
    adapter_base,
    check_model_dir_processor_only,
    pin_image_size,
    resolve_dtype,
)
from .families import BY_MODEL_TYPE, FAMILIES, Family, known_families

#: files of which one must exist for the weights
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

__all__ = ["PROCESSOR_FILES", "WEIGHT_FILES", "adapter_base", "check_model_dir", "family_of_dir", "load_model",
           "load_processor", "resolve_dtype"]


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
    if not _is_local(path):
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

    base = adapter_base(path) if _is_local(path) else None
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
