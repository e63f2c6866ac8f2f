"""Segmenters behind one interface (see :mod:`.base`): ``box``, ``grabcut`` and ``sam2``.

Build one by spec with :func:`make_segmenter`: ``"box"``, ``"grabcut"``, ``"sam2"`` or
``"sam2:<size>"`` (tiny, small, base_plus, large), ``"sam3"`` / ``"sam3:<dir>"`` (SAM3's
tracker from a local directory), plus keyword options.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import PromptSet, Segmenter
from .box import BoxSegmenter

SEGMENTERS = ("box", "grabcut", "sam2", "sam3")
#: segmenters that need no weights (the embedded default runs on these)
WEIGHTLESS = ("box", "grabcut")


def make_segmenter(spec: "str | Segmenter", **options: Any) -> Segmenter:
    """A segmenter from ``name[:arg]`` and options; a Segmenter instance passes through."""
    if isinstance(spec, Segmenter):
        return spec
    name, _, arg = str(spec).partition(":")
    if name == "box":
        return BoxSegmenter(**options)
    if name == "grabcut":
        from .grabcut import GrabCutSegmenter

        return GrabCutSegmenter(**options)
    if name == "sam2":
        from .sam2_segmenter import SAM2Segmenter

        if arg:
            options.setdefault("size", arg)
        return SAM2Segmenter(**options)
    if name == "sam3":
        from .sam3_segmenter import SAM3Segmenter

        if arg:
            options.setdefault("checkpoint", arg)
        return SAM3Segmenter(**options)
    raise ConfigError(f"unknown segmenter {spec!r}; valid: {', '.join(SEGMENTERS)} (sam2 as sam2:<size>, sam3 as sam3:<dir>)")


__all__ = ["SEGMENTERS", "WEIGHTLESS", "BoxSegmenter", "PromptSet", "Segmenter", "make_segmenter"]
