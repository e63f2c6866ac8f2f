"""Fuzzed dataset files (issue 8): a fixed seed and a bounded count, run in a child process
so that a segfault or a hang is a failed test. See tests/fuzz_data.py for the targets.

On the loaders before issue 8 was fixed, seed 0 with 60 cases per target gave 12 findings
(TypeError on unhashable ids, TypeError/MemoryError from corrupt refs pickles)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fuzzed_data_files_load_or_raise_dataset_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_data", "--seed", "0", "--count", "60", "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("fuzz:", "FINDING"))]
    assert proc.returncode == 0, "\n".join(summary) or proc.stderr[-3000:]
    assert summary and summary[0].startswith("fuzz: 540 cases"), proc.stdout
