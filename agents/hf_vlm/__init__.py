"""One prompter for Hugging Face VLMs: Qwen2.5-VL, Qwen3-VL, InternVL3 (HF format), LLaVA-1.5.

- :class:`HFVLMPrompter`: the agent (``t2s bench --agents hf-vlm:/path/to/checkpoint``;
  ``qwen:<path>`` is the Qwen2.5-VL-only alias).
- :mod:`.families`: per-family adapters (coordinate frame, image side, generation, LoRA).
- :mod:`.loading`: checks with one-line errors naming the path, loading via auto classes.
- :mod:`.tiny`: tiny random models of every family, built offline (tests, CPU recipe).

Importing this package does not import transformers; the classes do, when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAMILIES", "HFVLMPrompter", "get_family"]


def __getattr__(name: str) -> Any:
    if name == "HFVLMPrompter":
        from .prompter import HFVLMPrompter

        return HFVLMPrompter
    if name in ("FAMILIES", "get_family"):
        from . import families

        return getattr(families, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
