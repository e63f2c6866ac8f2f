"""User-facing errors.

Every error a user can cause by bad input (a missing file, a bad value) is a
:class:`T2SError`: its message is one line that names the file or value and says how to
fix it. The ``t2s`` command prints it as ``t2s: error: ...`` and exits with status 2;
anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class T2SError(Exception):
    """A problem with the user's input, explained in one line."""


class DatasetError(T2SError):
    """A dataset file is missing, unreadable or inconsistent."""


class CheckpointError(T2SError):
    """Model weights are missing or do not match the expected architecture."""


class ConfigError(T2SError):
    """An option, name or configuration value is invalid."""


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean a or b?)`` for the valid names close to ``name``, else ``""``: the
    suffix every "unknown key/name" message carries."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=3, cutoff=0.75)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
