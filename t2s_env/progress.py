"""Progress of long work (generating and checking datasets, training), on stderr.

- stderr is a terminal: a tqdm bar.
- stderr is a log or a pipe (CI, ``nohup``, a notebook's captured cell): plain lines, at
  most one every :data:`LOG_EVERY_S` seconds (``desc: 120/600 images (20%), 31 s,
  3.9 images/s, about 2 min left``) and a last one when the work ends; nothing for work
  that ends within the first interval, so short commands stay quiet.
- ``enabled=False`` (a command's ``--no-progress``) or ``T2S_NO_PROGRESS=1`` in the
  environment: nothing.

stdout keeps only the command's results either way.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")

#: seconds between two progress lines when stderr is not a terminal
LOG_EVERY_S = 15.0
#: set (to anything but "" or "0") to turn every progress bar and line off
NO_PROGRESS_ENV = "T2S_NO_PROGRESS"


def stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_disabled_by_env() -> bool:
    return os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        minutes = seconds / 60
        return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LogProgress:
    """tqdm's interface (``update``, ``set_postfix``, ``write``, ``close``, a context
    manager) as plain lines for a stderr that is not a terminal."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, every_s: float | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.every_s = LOG_EVERY_S if every_s is None else every_s
        self.n = self._start_n = initial
        self._start = self._last = time.monotonic()
        self._printed_n: int | None = None
        self._postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every_s:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    @staticmethod
    def write(text: str, file: Any = None) -> None:
        print(text, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        if self._printed_n is not None and self._printed_n != self.n:
            self._line()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n}/{self.total} {self.unit}s" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else ""),
                 _duration(elapsed)]
        if rate > 0:
            parts.append(f"{rate:.3g} {self.unit}s/s")
            if self.n < self.total:
                parts.append(f"about {_duration((self.total - self.n) / rate)} left")
        self.write(f"{self.desc}: {', '.join(parts)}" + (f"; {self._postfix}" if self._postfix else ""))
        self._printed_n, self._last = self.n, now


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None, initial: int = 0,
                 log_every_s: float | None = None) -> Any:
    """Progress of ``total`` steps (a context manager with ``update(n)``, ``set_postfix``
    and ``write(text, file=...)``): a tqdm bar on a terminal, lines every ``log_every_s``
    seconds (default :data:`LOG_EVERY_S`) otherwise (module docstring). ``enabled`` True forces the bar, False (or
    ``T2S_NO_PROGRESS=1``) shows nothing, None chooses by stderr."""
    from tqdm import tqdm

    off = enabled is False or progress_disabled_by_env()
    if enabled is None and not off and not stderr_is_tty():
        return LogProgress(total, desc, unit, initial, log_every_s)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=off,
                dynamic_ncols=True)


def progress_iter(items: Iterable[T], total: int, desc: str, unit: str, enabled: bool | None = None) -> Iterator[T]:
    """``items`` with progress that advances as each one is taken. It closes when the loop
    ends, also through an exception (CPython closes the dropped generator at once)."""
    with progress_bar(total, desc, unit, enabled) as bar:
        for item in items:
            yield item
            bar.update(1)


__all__ = ["LOG_EVERY_S", "LogProgress", "NO_PROGRESS_ENV", "progress_bar", "progress_disabled_by_env",
           "progress_iter", "stderr_is_tty"]
