"""The ``t2s bench`` command's former module, which held the CLI, the planner and the
runner (now :mod:`.cli`, :mod:`.plan` and :mod:`.runner`).

Kept only as a name: an editable install made before the split still registers
``bench = think2seg.benchmarks.harness:main`` in its metadata until it is reinstalled, and
``python -m think2seg.benchmarks.harness`` keeps working. New code imports :mod:`.cli`.
"""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["bench", *sys.argv[1:]]))
