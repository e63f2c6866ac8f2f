"""Training an hf_vlm prompter with trl: the model to start from, LoRA, and a trainer that
resumes transformers-5 checkpoints.

- :func:`resolve_model_path`: ``tiny:DIR`` (built offline), a local folder, or a hub id
  checked with one quick request (offline: the local hub cache, else a one-line error).
- :func:`model_family`: the family of a checkpoint, checked against the one asked for.
- :func:`load_trainable`: the model, optionally with its vision tower frozen.
- :func:`lora_config`: peft's ``LoraConfig`` from trl's ``ModelConfig``.
- :func:`grpo_trainer_class`: trl's ``GRPOTrainer`` with the resume fix below.

Importing this module does not import transformers or trl; the functions do.
"""

from __future__ import annotations

import os
from typing import Any

from t2s_env.errors import CheckpointError, ConfigError

from .loading import is_local, load_model

DEFAULT_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def resolve_model_path(name: str, *, family: str | None, output_dir: str, image_size: int) -> str:
    """A local folder for ``model_name_or_path`` ``name``. ``tiny:DIR`` builds a tiny random
    model of ``family`` (default Qwen2.5-VL) into DIR (default ``output_dir/tiny-qwen``; once,
    on the main process); a hub id is checked with one quick request, so that an offline
    machine fails at once instead of retrying every file for minutes: offline, a copy in the
    local hub cache is used, else a one-line error."""
    if name.startswith("tiny:"):
        from accelerate import PartialState

        from .tiny import build_tiny, tiny_dir_for

        family = family or "qwen2_5_vl"
        path = os.path.expanduser(name[len("tiny:") :] or os.path.join(output_dir, "tiny-qwen"))
        path = str(tiny_dir_for(family, path))  # DIR, or DIR-<family> when DIR holds another family
        with PartialState().main_process_first():
            build_tiny(family, path, image_size=image_size)
        return path
    if is_local(name):
        return os.path.expanduser(name)
    return resolve_hub_model(name)


def resolve_hub_model(repo_id: str, revision: str | None = None) -> str:
    """``repo_id`` when the hub answers; offline, the cached snapshot folder; else ConfigError."""
    import huggingface_hub
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    def cached() -> str | None:
        hit = try_to_load_from_cache(repo_id, "config.json", revision=revision)
        return os.path.dirname(hit) if isinstance(hit, str) else None

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        try:
            huggingface_hub.HfApi().model_info(repo_id, revision=revision, timeout=10)
            return repo_id
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise ConfigError(f"model {repo_id}{'@' + revision if revision else ''} is not on the hub; "
                              "pass a local checkpoint folder or an existing hub id") from None
        except Exception:  # noqa: BLE001 - no network (each HTTP client has its own errors): try the cache
            pass
    path = cached()
    if path is None:
        raise ConfigError(
            f"model {repo_id} is not in the local hub cache and the hub cannot be reached; download it where there "
            f"is a network (hf download {repo_id} --local-dir DIR) and pass model_name_or_path=DIR"
        )
    return path


def model_family(model_path: str, family: str | None = None, need_processor: bool = True) -> Any:
    """The family of the model at ``model_path`` (a LoRA adapter: its base's; a hub id:
    ``family`` or Qwen2.5-VL, read when loaded), checked against ``family`` when given."""
    from .families import get_family
    from .loading import adapter_base, check_model_dir, family_of_dir

    base = adapter_base(model_path) if os.path.isdir(model_path) else None
    if base is None:
        found = check_model_dir(model_path, need_processor=need_processor)
    else:
        found = family_of_dir(os.path.expanduser(base)) if os.path.isdir(os.path.expanduser(base)) else None
    if found is None:  # a hub id: its config is read when loaded
        found = get_family(family or "qwen2_5_vl")
    if family is not None and get_family(family).name != found.name:
        raise ConfigError(f"{model_path} holds a {found.label} model but family={family}; "
                          f"set family={found.name} or pass a {get_family(family).label} checkpoint")
    return found


def load_trainable(path: str, dtype: str | None = None, attn_implementation: str | None = None,
                   freeze_vision: bool = False) -> Any:
    """The model to train (``dtype``: auto, float32, bfloat16, float16 or None), its vision
    tower frozen when ``freeze_vision``."""
    import torch

    dtype = dtype if dtype in (None, "auto") else getattr(torch, dtype)
    model = load_model(path, dtype=dtype, attn_implementation=attn_implementation)
    if freeze_vision:
        inner = getattr(model, "model", model)  # Qwen: visual; InternVL, LLaVA: vision_tower
        visual = next((v for v in (getattr(inner, "visual", None), getattr(inner, "vision_tower", None),
                                   getattr(model, "visual", None)) if v is not None), None)
        if visual is None:
            raise CheckpointError(f"{path}: cannot find the vision tower to freeze")
        for p in visual.parameters():
            p.requires_grad_(False)
    return model


def lora_config(m: Any, freeze_vision: bool = False) -> Any:
    """trl ``ModelConfig`` ``m``'s LoRA (``use_peft``; None without), on the language model
    only when the vision tower is frozen (its MLP uses the same module names, hence the regex)."""
    if not m.use_peft:
        return None
    from peft import LoraConfig

    mods = "|".join(sorted(set(m.lora_target_modules or DEFAULT_LORA_MODULES)))
    target = rf".*language_model.*\.({mods})" if freeze_vision else rf".*\.({mods})"
    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=target,
        modules_to_save=m.lora_modules_to_save,
        use_rslora=m.use_rslora,
        use_dora=m.use_dora,
        task_type=m.lora_task_type,
    )


def grpo_trainer_class() -> type:
    """GRPOTrainer with a resume fix: transformers 5 saves Qwen2.5-VL under its original key
    names (``visual.*``, ``model.layers.*``) but ``Trainer`` resumes with a plain
    ``load_state_dict`` that renames nothing (transformers#43701), so every weight of the
    checkpoint would be skipped with a warning and training would restart from the base
    model. Here the checkpoint is read with ``from_pretrained`` (which renames) instead.
    DeepSpeed (own checkpoint format) and LoRA (adapter files) keep trl's path."""
    from trl import GRPOTrainer

    class T2SGRPOTrainer(GRPOTrainer):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            target = model if model is not None else self.model
            if self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(target, "peft_config"):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=target.dtype, device_map=None)
            result = target.load_state_dict(loaded.state_dict(), strict=False)
            del loaded
            tied = getattr(target, "_tied_weights_keys", None) or {}
            bad = [k for k in result.missing_keys if k not in tied]
            if result.unexpected_keys or bad:
                raise CheckpointError(
                    f"{resume_from_checkpoint} does not match the model: missing {bad[:3]}, "
                    f"unexpected {result.unexpected_keys[:3]}"
                )

    return T2SGRPOTrainer


__all__ = ["DEFAULT_LORA_MODULES", "grpo_trainer_class", "load_trainable", "lora_config", "model_family",
           "resolve_hub_model", "resolve_model_path"]
