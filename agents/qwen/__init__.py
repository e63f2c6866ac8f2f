"""Qwen2.5-VL prompter (Think2Seg-RS checkpoints) and helpers shared with GRPO training.

- :class:`QwenPrompter`: the agent (``t2s bench --agents qwen:/path/to/checkpoint``).
- :func:`generate_completions`: batched, left-padded generation (also used by training's
  validation pass).
- :mod:`.loading`: helpers shared with every family (hub ids, adapters, the processor pinned to the frame).
- :mod:`.tiny`: a tiny random Qwen2.5-VL built offline (tests, the CPU recipe).

Importing this package does not import transformers; the classes do, when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QwenPrompter", "generate_completions", "build_tiny_qwen"]


def __getattr__(name: str) -> Any:
    if name == "QwenPrompter":
        from .prompter import QwenPrompter

        return QwenPrompter
    if name == "generate_completions":
        from .generation import generate_completions

        return generate_completions
    if name == "build_tiny_qwen":
        from .tiny import build_tiny_qwen

        return build_tiny_qwen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
