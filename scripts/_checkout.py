"""Import the checkout's applications as ``think2seg.*`` when a script is run as a file.

An installed Think2Seg maps ``agents/``, ``benchmarks/`` and ``scripts/`` into the
``think2seg`` namespace (setup.cfg). A script run from a bare checkout (for example on a
GPU machine where nothing is installed: ``python scripts/gpu_check_grpo.py``) imports this
file first; it puts the checkout on ``sys.path`` for ``t2s_env`` and, when ``think2seg`` is
not installed, makes it a namespace over the checkout, so the same import lines work.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if "think2seg" not in sys.modules and importlib.util.find_spec("think2seg") is None:
    namespace = types.ModuleType("think2seg")
    namespace.__path__ = [str(REPO)]  # think2seg.agents -> REPO/agents, and so on
    sys.modules["think2seg"] = namespace
