"""`SampleDataset`: what every loader shares — a validated, indexed list of samples.

A loader subclasses it and implements :meth:`SampleDataset._index`; problems found while
indexing go through :meth:`_problem` (an error naming the file with ``strict=True``, a
counted skip otherwise) and end in one warning that counts the skips.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

from ..errors import ConfigError, DatasetError
from .sample import Sample

QUESTION_CHOICES = ("first", "random", "all")
SPLITS = ("train", "val", "test")


class DatasetWarning(UserWarning):
    """Samples were skipped while loading a dataset."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; replace or remove the file") from None


class SampleDataset(Sequence[Sample]):
    """The samples of one split, indexed and validated at construction.

    Subclasses set ``dataset`` (the registry name), ``unit`` (what a skip counts: image,
    ref, entry) and ``layout_hint`` (what ``--root`` must point at), and implement
    ``_index() -> list[Sample]``.
    """

    dataset = "dataset"
    unit = "image"
    layout_hint = "the dataset folder"

    def __init__(self, root: str | Path, split: str, question: str = "first", seed: int = 0,
                 strict: bool = True) -> None:
        if question not in QUESTION_CHOICES:
            raise ConfigError(f"question must be one of {', '.join(QUESTION_CHOICES)}, got {question!r}")
        self.root = Path(root)
        self.split = split
        self.question = question
        self.seed = seed
        self.strict = strict
        self.skipped: Counter[str] = Counter()
        self._notes: list[str] = []
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} does not exist; pass --root DIR pointing at {self.layout_hint}")
        self.samples: list[Sample] = self._index()
        self._warn_skips()

    # -- Sequence -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.split}"

    def image_ids(self) -> list[str]:
        return sorted({s.image_id for s in self.samples})

    # -- for subclasses -------------------------------------------------------------------
    def _index(self) -> list[Sample]:
        raise NotImplementedError

    def _problem(self, message: str, kind: str) -> None:
        """A broken entry: raise (strict) or count it as a skip of ``kind``."""
        if self.strict:
            raise DatasetError(f"{message} (or load with strict=False to skip such {self.unit}s)")
        self._skip(kind, message)

    def _skip(self, kind: str, note: str) -> None:
        """An entry that is skipped whatever ``strict`` says (e.g. no questions)."""
        self.skipped[kind] += 1
        self._notes.append(note)

    def _warn_skips(self) -> None:
        if self.skipped:
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            warnings.warn(
                f"{self.name} ({self.root}): skipped {sum(self.skipped.values())} {self.unit}(s) "
                f"({summary}); first: {self._notes[0]}",
                DatasetWarning,
                stacklevel=4,
            )
