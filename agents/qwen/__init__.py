"""A tiny random Qwen2.5-VL built offline (:mod:`.tiny`); the agent is
:class:`think2seg.agents.hf_vlm.QwenPrompter`."""

from __future__ import annotations

from typing import Any

__all__ = ["build_tiny_qwen"]


def __getattr__(name: str) -> Any:
    if name == "build_tiny_qwen":
        from .tiny import build_tiny_qwen

        return build_tiny_qwen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
