"""Fixtures of the performance benchmarks (``pytest tests/perf --benchmark-only``).

Not part of the default run (tests/conftest.py leaves perf/ out unless it is named). Every
benchmark also runs, once, under ``--benchmark-disable``. Derived figures (steps/s, speed-up ratios) are collected in
:data:`FIGURES` and printed in the terminal summary, so they show without ``-s``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

#: (name, value, unit, note) rows printed at the end of the session
FIGURES: list[tuple[str, float, str, str]] = []


def record(name: str, value: float, unit: str, note: str = "") -> None:
    FIGURES.append((name, float(value), unit, note))


@pytest.fixture(scope="session")
def figures():
    return record


@pytest.fixture(scope="session")
def rect_dataset_root(tmp_path_factory) -> Path:
    """EarthReason-layout rectangles on white noise at 840² (GrabCut's worst case)."""
    repo = Path(__file__).resolve().parents[2]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from tests.datagen import write_rectangle_dataset

    root = tmp_path_factory.mktemp("bench-rects")
    write_rectangle_dataset(root, split="val", n=6, n_empty=1, seed=0, size=840)
    return root


@pytest.fixture
def one_core():
    """One CPU thread for torch and OpenCV (the budgets are per core); restored after."""
    import cv2
    import torch

    t, c = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(t)
    cv2.setNumThreads(c)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("Think2Seg benchmark figures")
    tr.write_line(f"machine: {os.cpu_count()} CPU(s); figures below are from this run")
    for name, value, unit, note in FIGURES:
        tr.write_line(f"{name:<58} {value:>12.3f} {unit:<14} {note}")
