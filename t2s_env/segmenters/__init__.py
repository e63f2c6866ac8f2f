"""Segmenters behind one interface (see :mod:`.base`): ``box``, ``grabcut``, ``sam2`` and ``sam3``.

Build one by spec with :func:`make_segmenter`: ``"box"``, ``"grabcut"``, ``"sam2"`` or
``"sam2:<size>"`` (tiny, small, base_plus, large), ``"sam3"`` / ``"sam3:<dir>"`` (SAM3's
tracker from a local directory), plus keyword options.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, did_you_mean
from .base import InstanceState, MaskState, PromptSet, Segmenter
from .box import BoxSegmenter
from .options import check_option_keys

SEGMENTERS = ("box", "grabcut", "sam2", "sam3")
#: segmenters that need no weights (the embedded default runs on these)
WEIGHTLESS = ("box", "grabcut")


def make_segmenter(spec: "str | Segmenter", **options: Any) -> Segmenter:
    """A segmenter from ``name[:arg]`` and options; a Segmenter instance passes through.

    An option the segmenter does not take, or a value of the wrong kind or out of range
    (a string, a boolean or NaN for a number), is a one-line :class:`ConfigError`."""
    if isinstance(spec, Segmenter):
        return spec
    name, _, arg = str(spec).partition(":")
    cls: type[Segmenter]
    if name == "box":
        cls = BoxSegmenter
    elif name == "grabcut":
        from .grabcut import GrabCutSegmenter as cls
    elif name == "sam2":
        from .sam2_segmenter import SAM2Segmenter as cls

        if arg:
            options.setdefault("size", arg)
    elif name == "sam3":
        from .sam3_segmenter import SAM3Segmenter as cls

        if arg:
            options.setdefault("checkpoint", arg)
    else:
        raise ConfigError(f"unknown segmenter {spec!r}{did_you_mean(name, SEGMENTERS)}; valid: {', '.join(SEGMENTERS)} "
                          "(sam2 as sam2:<size>, sam3 as sam3:<dir>)")
    check_option_keys(name, cls, options)
    return cls(**options)

__all__ = ["SEGMENTERS", "WEIGHTLESS", "BoxSegmenter", "InstanceState", "MaskState", "PromptSet", "Segmenter", "make_segmenter"]
