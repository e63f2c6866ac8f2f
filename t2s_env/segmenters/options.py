"""Checks of segmenter options: known keys, and numbers of the right kind and range.

Options arrive from the command line (``--segmenter-option KEY=VALUE``, read as YAML),
from config files and from code, so a typo, a string, a boolean or a NaN must be refused
in one line naming the option and what it takes, before any model is built.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Mapping

import torch

from ..errors import ConfigError, did_you_mean

#: seeds reach cv2.setRNGSeed, which takes a C int
MAX_SEED = 2**31 - 1
#: radii in pixels; a disc's stencil costs (2r)^2 cells, and no image is wider than 4096
MAX_RADIUS = 1024.0


def option_names(cls: type) -> list[str]:
    """The keyword options a segmenter class's constructor takes."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_option_keys(segmenter: str, cls: type, options: Mapping[str, Any]) -> None:
    """Raise a ConfigError naming the first option ``cls`` does not take, with a "did you
    mean" and the valid keys."""
    valid = option_names(cls)
    for key in options:
        if key not in valid:
            raise ConfigError(f"segmenter {segmenter!r} has no option {key!r}{did_you_mean(key, valid)}; "
                              f"valid: {', '.join(valid)}")


def _shown(key: str, value: Any) -> str:
    """``key=value`` as it would be typed; a blank or padded string is quoted to be seen."""
    blank = isinstance(value, str) and (not value.strip() or value != value.strip())
    return f"{key}={value!r}" if blank else f"{key}={value}"


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(segmenter: str, key: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (``high`` None: no upper bound), or a ConfigError."""
    if not _is_integer(value) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{segmenter} option {_shown(key, value)} is invalid: give an integer {bound}")
    return int(value)


def check_real(segmenter: str, key: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float in ``[low, high]`` (None: unbounded), or a ConfigError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        if low is None and high is None:
            bound = ""
        elif high is None:
            bound = f" >= {low:g}"
        elif low is None:
            bound = f" <= {high:g}"
        else:
            bound = f" in [{low:g}, {high:g}]"
        raise ConfigError(f"{segmenter} option {_shown(key, value)} is invalid: give a finite number{bound}")
    return float(value)


def check_flag(segmenter: str, key: str, value: Any) -> bool:
    """``value`` as a bool (``true``/``false``), or a ConfigError: the string "false" would be true."""
    if not isinstance(value, bool):
        raise ConfigError(f"{segmenter} option {key}={value!r} is invalid: give true or false (not a string or number)")
    return value



def check_device(segmenter: str, device: Any) -> torch.device:
    """``device`` (``"cuda"``, ``"cuda:1"``, ``"cpu"``, a torch.device) as a torch.device; None
    picks the first GPU when there is one, else the CPU. Anything else is a ConfigError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if not isinstance(device, (str, torch.device)):
            raise TypeError
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{segmenter} option {_shown('device', device)} is invalid: "
                          "give cpu, cuda or cuda:<index>") from None
