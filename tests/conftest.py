"""Shared fixtures. Tests never touch the network or a model hub; data is written here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.datagen import write_rectangle_dataset

#: The pytest-benchmark suites run only when named: ``pytest tests/perf --benchmark-only``.
collect_ignore = ["perf"]


def pytest_configure(config):
    # CI has 2 shared cores: torch's intra-op threads contending with other work slowed a
    # tiny GRPO step 40-70x, one thread only 2x (ECOSYSTEM.md). T2S_TEST_THREADS overrides.
    import torch

    torch.set_num_threads(int(os.environ.get("T2S_TEST_THREADS", "1")))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """The embedded synthetic set is generated once per session into a private cache."""
    cache = tmp_path_factory.mktemp("t2s-cache")
    old = os.environ.get("T2S_CACHE_DIR")
    os.environ["T2S_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("T2S_CACHE_DIR", None)
    else:
        os.environ["T2S_CACHE_DIR"] = old


@pytest.fixture
def rect_root(tmp_path) -> Path:
    """An EarthReason-layout dataset of rectangle masks (val split, 6 images, 1 empty)."""
    root = tmp_path / "rects"
    write_rectangle_dataset(root, split="val", n=6, n_empty=1, seed=0)
    return root


#: the tiny Qwen2.5-VL's processor keeps 112×112 images: 8×8 patches -> 16 visual tokens
TINY_QWEN_SIZE = 112


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-VL (tokenizer, processor, model) saved to a directory, built
    offline once per session (trl rebuilds its reference model from the path)."""
    from think2seg.agents.hf_vlm.tiny import build_tiny

    return build_tiny("qwen2_5_vl", tmp_path_factory.getbasetemp() / f"tiny-qwen-{TINY_QWEN_SIZE}",
                      image_size=TINY_QWEN_SIZE)
