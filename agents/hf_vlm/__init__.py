"""One prompter for Hugging Face VLMs: Qwen2.5-VL, Qwen3-VL, InternVL3 (HF format), LLaVA-1.5.

- :class:`HFVLMPrompter`: the agent (``t2s bench --agents hf-vlm:/path/to/checkpoint``).
- :class:`QwenPrompter`: its Qwen2.5-VL-only alias (``qwen:<path>``, the Think2Seg-RS checkpoints).
- :mod:`.families`: per-family adapters (coordinate frame, image side, generation, LoRA).
- :mod:`.loading`: checks with one-line errors naming the path, loading via auto classes.
- :mod:`.generation`: :func:`generate_completions`, batched left-padded generation (also
  training's validation pass).
- :mod:`.tiny`: tiny random models of every family, built offline (tests, CPU recipe).

Importing this package does not import transformers; the classes do, when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAMILIES", "HFVLMPrompter", "QwenPrompter", "generate_completions", "get_family"]


def __getattr__(name: str) -> Any:
    if name in ("HFVLMPrompter", "QwenPrompter"):
        from . import prompter

        return getattr(prompter, name)
    if name == "generate_completions":
        from .generation import generate_completions

        return generate_completions
    if name in ("FAMILIES", "get_family"):
        from . import families

        return getattr(families, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
