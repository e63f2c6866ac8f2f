"""Datasets: every loader yields :class:`Sample` objects.

Use :func:`make_dataset` with a spec ``name:split`` (``synthetic:val``,
``earthreason:test``, ...). ``synthetic`` needs no root: it is the embedded default,
generated once into a cache directory on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import ConfigError, DatasetError
from .earthreason import QUESTION_CHOICES, EarthReasonDataset, check_dataset, seeded_choice
from .sample import Sample, read_binary_mask, read_rgb


def _earthreason(root, split, **kw):
    if root is None:
        raise DatasetError("dataset 'earthreason' needs --root DIR (the folder holding train/ val/ test/)")
    return EarthReasonDataset(root, split, **kw)


def _synthetic(root, split, **kw):
    from .synthetic import embedded_root

    return EarthReasonDataset(root if root is not None else embedded_root(), split, **kw)


def _referring(name):
    def load(root, split, **kw):
        from . import referring

        if root is None:
            raise DatasetError(f"dataset {name!r} needs --root DIR; see docs/datasets.md for the expected layout")
        return referring.LOADERS[name](root, split, **kw)

    return load


#: name -> (loader(root, split, question=, seed=, strict=), default split)
DATASETS: dict[str, tuple[Callable[..., Sequence[Sample]], str]] = {
    "synthetic": (_synthetic, "val"),
    "earthreason": (_earthreason, "test"),
    "rrsisd": (_referring("rrsisd"), "test"),
    "refsegrs": (_referring("refsegrs"), "test"),
    "risbench": (_referring("risbench"), "test"),
}


def parse_dataset_spec(spec: str) -> tuple[str, str]:
    """``name[:split]`` -> (name, split); raises ConfigError listing the valid names."""
    name, _, split = spec.partition(":")
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)} (as name:split)")
    return name, split or DATASETS[name][1]


def make_dataset(
    spec: str,
    root: str | Path | None = None,
    question: str = "first",
    seed: int = 0,
    strict: bool = True,
) -> Sequence[Sample]:
    """Load a dataset split by spec, e.g. ``make_dataset("earthreason:test", root=...)``."""
    name, split = parse_dataset_spec(spec)
    loader, _ = DATASETS[name]
    return loader(root, split, question=question, seed=seed, strict=strict)


__all__ = [
    "DATASETS",
    "EarthReasonDataset",
    "QUESTION_CHOICES",
    "Sample",
    "check_dataset",
    "make_dataset",
    "parse_dataset_spec",
    "read_binary_mask",
    "read_rgb",
    "seeded_choice",
]
