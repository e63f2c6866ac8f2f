"""Progress bars for long library work (generating and checking datasets).

tqdm on stderr, shown only when stderr is a terminal: piped output and logs stay clean,
and stdout keeps only the command's results.
"""

from __future__ import annotations

import sys
from typing import Any


def stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None) -> Any:
    """A tqdm bar (a context manager with ``update(n)``) for ``total`` steps; ``enabled``
    None means: when stderr is a terminal."""
    from tqdm import tqdm

    if enabled is None:
        enabled = stderr_is_tty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, dynamic_ncols=True)


__all__ = ["progress_bar", "stderr_is_tty"]
