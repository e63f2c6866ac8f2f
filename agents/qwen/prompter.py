"""`QwenPrompter`: a Qwen2.5-VL checkpoint (e.g. Think2Seg-RS-3B/7B) as a Think2Seg agent."""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Sequence

from t2s_env import ConfigError, build_messages, get_variant

from ..base import Agent
from .generation import generate_completions
from .loading import (
    PROCESSOR_FILES,
    adapter_base,
    check_model_dir,
    load_model,
    load_processor,
    pin_image_size,
    processed_size,
    resolve_dtype,
)

DEFAULT_MODEL = "RicardoString/Think2Seg-RS-3B"


class QwenPrompter(Agent):
    """Zero-shot (or fine-tuned) Qwen2.5-VL prompter.

    It sends the exact upstream messages (the env's ``info["messages"]``, or
    ``build_messages(question)`` when absent) with the observation's image, which the
    processor keeps at its size (840×840 → 60×60 patches → 900 visual tokens), generates
    left-padded batches and returns only the new text.

    Arguments:
        model: a local Hugging Face directory, a hub id, or a loaded model. A PEFT adapter
            directory (from a LoRA run) loads on its base model. ``t2s bench --agents
            qwen:/path`` sets this.
        processor: a directory / hub id / loaded processor when the model path lacks one.
        max_new_tokens: upstream's evaluation uses 2048.
        do_sample, temperature, top_p, top_k: greedy by default (upstream's evaluation);
            ``do_sample=True`` samples with the given temperature / nucleus.
        batch_size: prompts per ``generate`` call.
        device: ``cuda``, ``cuda:1``, ``cpu``; default the first GPU when there is one.
        dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``bfloat16``, ``float16``, ``float32``.
        attn_implementation: e.g. ``flash_attention_2`` or ``sdpa`` (transformers' default).
        image_size: the square side the processor must keep (the protocol frame).
        seed: seeds torch before sampling (only matters with ``do_sample``).
        prompt_variant: the instruction wording when ``info`` carries no ``messages``
            (the environment's info always does, in its own variant).
    """

    name = "qwen"
    arg_name = "model"

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        processor: Any = None,
        max_new_tokens: int = 2048,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        image_size: int = 840,
        seed: int | None = None,
        prompt_variant: str = "bbox+2pos",
    ) -> None:
        import torch

        if int(max_new_tokens) < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.top_k = top_k
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.seed = seed
        self.prompt_variant = get_variant(prompt_variant).name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype, str(self.device))
        if isinstance(model, str):
            self.model_path = os.path.expanduser(model)
            base = adapter_base(self.model_path) if os.path.isdir(self.model_path) else None
            if base is None:  # a model directory: check architecture and files before loading
                check_model_dir(self.model_path, need_processor=processor is None)
            if processor is None:
                processor = self.model_path if base is None or _has_processor(self.model_path) else base
        else:
            self.model_path = getattr(getattr(model, "config", None), "_name_or_path", type(model).__name__)
            if processor is None:
                raise ConfigError("pass processor=... together with a loaded model")
        if isinstance(processor, str):
            self.processor = load_processor(os.path.expanduser(processor), image_size=self.image_size)
        else:
            self.processor = processor
            if self.image_size:
                pin_image_size(self.processor, self.image_size)
        if isinstance(model, str):
            model = load_model(self.model_path, dtype=self.dtype, attn_implementation=attn_implementation)
        self.model = model.to(self.device).eval()
        self._warned_resize = False

    # -- Agent ---------------------------------------------------------------------------
    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        import torch

        if not observations:
            return []
        images, messages = [], []
        for obs, info in zip(observations, infos):
            image = obs["image"]
            h, w = image.shape[:2] if hasattr(image, "shape") else (image.height, image.width)
            if not self._warned_resize and processed_size(self.processor, h, w) != (h, w):
                warnings.warn(
                    f"the processor resizes {w}x{h} images to {processed_size(self.processor, h, w)[::-1]}: "
                    "the model's coordinates then refer to the resized image; use a square frame whose side "
                    "is a multiple of 28 (the protocol's 840) for coordinates in the observation's frame",
                    stacklevel=2,
                )
                self._warned_resize = True
            images.append(image)
            messages.append(info.get("messages") or build_messages(obs["question"], self.prompt_variant))
        if self.seed is not None and self.do_sample:
            torch.manual_seed(self.seed)
        texts, stats = generate_completions(
            self.model,
            self.processor,
            images,
            messages,
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            batch_size=self.batch_size,
            device=self.device,
        )
        self.last_stats = stats
        return texts

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_path,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature if self.do_sample else None,
            "top_p": self.top_p if self.do_sample else None,
            "batch_size": self.batch_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "image_size": self.image_size,
            "prompt_variant": self.prompt_variant,
        }


def _has_processor(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in PROCESSOR_FILES)
