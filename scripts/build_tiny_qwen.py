"""Write a tiny random Qwen2.5-VL (or, with --family, any supported VLM family: model +
tokenizer + processor) to a directory, offline.

    python -m think2seg.scripts.build_tiny_qwen runs/tiny-qwen --image-size 112
    python -m think2seg.scripts.build_tiny_qwen runs/tiny-qwen3 --family qwen3_vl

The builder lives in :mod:`agents.hf_vlm.tiny` (tests and ``model: tiny:DIR`` in
``grpo_tiny_cpu.yaml`` call it directly); this is its command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the checkout as think2seg.*
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _checkout  # noqa: F401

from think2seg.agents.hf_vlm.tiny import main

if __name__ == "__main__":
    sys.exit(main())
