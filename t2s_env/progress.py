"""Progress bars for long library work (generating and checking datasets).

tqdm on stderr, shown only when stderr is a terminal: piped output and logs stay clean,
and stdout keeps only the command's results.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


def stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _options(total: int, desc: str, unit: str, enabled: bool | None) -> dict[str, Any]:
    shown = stderr_is_tty() if enabled is None else enabled
    return {"total": total, "desc": desc, "unit": unit, "file": sys.stderr, "disable": not shown,
            "dynamic_ncols": True}


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None) -> Any:
    """A tqdm bar (a context manager with ``update(n)``) for ``total`` steps; ``enabled``
    None means: when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(**_options(total, desc, unit, enabled))


def progress_iter(items: Iterable[T], total: int, desc: str, unit: str, enabled: bool | None = None) -> Iterator[T]:
    """``items`` with a bar that advances as each one is taken. The bar closes when the
    loop ends, also through an exception (CPython closes the dropped iterator at once)."""
    from tqdm import tqdm

    return iter(tqdm(items, **_options(total, desc, unit, enabled)))


__all__ = ["progress_bar", "progress_iter", "stderr_is_tty"]
